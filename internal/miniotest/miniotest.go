// Package miniotest starts real MinIO servers for tests: on 127.0.0.1, on a
// free port, with a temporary data directory and generated credentials.
//
// The server binary is $ZEST_MINIO_BIN, the repo's .bin/minio (installed by
// scripts/minio.sh install, which `make test` and .ci/run call), or minio on
// PATH. When none is found the test fails if CI=true, and otherwise skips
// saying how to install it.
package miniotest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running (or stopped) MinIO server.
//
// A Server is safe for concurrent use.
type Server struct {
	// Endpoint is host:port, without scheme.
	Endpoint  string
	AccessKey string
	SecretKey string

	bin, dir string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	log      *os.File
}

// Binary returns the path of a MinIO server binary, or "" if none is found.
func Binary() string {
	if b := os.Getenv("ZEST_MINIO_BIN"); b != "" {
		if _, err := os.Stat(b); err == nil {
			return b
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				if b := filepath.Join(d, ".bin", "minio"); fileExists(b) {
					return b
				}
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if b, err := exec.LookPath("minio"); err == nil {
		return b
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Start starts a server for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "MinIO not found: run `scripts/minio.sh install` (or `make test`, which does), or set ZEST_MINIO_BIN"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (skipping: not in CI)")
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "zest" + randHex(6),
		SecretKey: randHex(18),
		bin:       bin,
		dir:       t.TempDir(),
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Stop kills the server (SIGKILL) and waits for it to exit. The data stays.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	_ = s.log.Close()
}

// Restart starts the server again on the same port and data, and waits
// until it is ready.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "minio.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	data := filepath.Join(s.dir, "data")
	cmd := exec.Command(s.bin, "server", "--quiet", "--address", s.Endpoint, "--console-address", "127.0.0.1:0", data)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey, "MINIO_BROWSER=off")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("miniotest: start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited, s.log = cmd, exited, log
	return s.waitReady(exited)
}

// waitReady polls the health endpoint until the server answers, it exits,
// or 60 seconds pass.
func (s *Server) waitReady(exited chan struct{}) error {
	// /minio/health/live answers before the object layer is initialized; an
	// S3 request answers 503 until it is. Wait for both.
	base := "http://" + s.Endpoint
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(60 * time.Second)
	for {
		if status(client, base+"/minio/health/live") == http.StatusOK {
			if st := status(client, base+"/"); st != 0 && st != http.StatusServiceUnavailable {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("miniotest: server exited during start-up; log: %s", s.tail())
		case <-deadline:
			return fmt.Errorf("miniotest: server not ready after 60s; log: %s", s.tail())
		case <-tick.C:
		}
	}
}

// status returns the HTTP status of a GET of url, or 0 if it failed.
func status(c *http.Client, url string) int {
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (s *Server) tail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "minio.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
