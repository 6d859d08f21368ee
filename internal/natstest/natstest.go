// Package natstest starts real NATS servers with JetStream for tests, in
// the test's process (nats-server is pure Go): on 127.0.0.1, on a free
// port, with a temporary store directory. Stop and Restart keep the port
// and the store, so a test can take the server away mid-delivery and bring
// it back with its streams.
package natstest

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure a server. The zero value is a server without
// authentication.
type Options struct {
	// User and Password, if set, are required of clients.
	User, Password string
}

// Server is a running (or stopped) NATS server.
//
// A Server is safe for concurrent use.
type Server struct {
	// URL is the client URL, nats://127.0.0.1:port.
	URL string

	opts server.Options
	mu   sync.Mutex
	srv  *server.Server
}

// Start starts a server for t and stops it when t ends. o may be nil.
func Start(t testing.TB, o *Options) *Server {
	t.Helper()
	s, err := New(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// New starts a server keeping its streams in dir (for programs; tests use
// Start).
func New(dir string, o *Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL: fmt.Sprintf("nats://127.0.0.1:%d", port),
		opts: server.Options{
			Host:      "127.0.0.1",
			Port:      port,
			JetStream: true,
			StoreDir:  dir,
			NoLog:     true,
			NoSigs:    true,
			// Below the 64 MiB default: tests and the demo run many servers.
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  1 << 30,
		},
	}
	if o != nil {
		s.opts.Username, s.opts.Password = o.User, o.Password
	}
	if err := s.Restart(); err != nil {
		return nil, err
	}
	return s, nil
}

// Stop shuts the server down and waits until it is gone. Its streams stay
// in the store directory. Stop is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart starts the server again on the same port and store, and waits
// until it accepts connections.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	o := s.opts // NewServer keeps and changes its options
	srv, err := server.NewServer(&o)
	if err != nil {
		return fmt.Errorf("natstest: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("natstest: server on %s not ready after 30s", s.URL)
	}
	s.srv = srv
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
