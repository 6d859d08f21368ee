package natssink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
)

// KindPublish is the kind of the entries this sink applies.
const KindPublish = "nats.publish"

// Headers the sink sets on every message, besides Nats-Msg-Id.
const (
	HeaderWriter = "Zest-Writer"
	HeaderSeq    = "Zest-Seq"
)

// Publish returns an entry that publishes data to subject, with the headers
// given (may be nil). The subject is the ordering key.
func Publish(subject string, data []byte, headers map[string]string) effectqueue.Entry {
	return effectqueue.Entry{Kind: KindPublish, Key: subject, Payload: data, Meta: headers}
}

// Options configure a Sink. Empty fields fall back to the environment
// (ZEST_NATS_*), then to the defaults given.
type Options struct {
	// URL is the server URL, or a comma-separated list
	// (ZEST_NATS_URL). Required.
	URL string
	// Stream is the JetStream stream published to (ZEST_NATS_STREAM).
	// Required.
	Stream string
	// Subjects are the stream's subjects when the sink creates it. Default
	// Stream + ".>" (e.g. "PURCHASES.>").
	Subjects []string
	// CreateStream makes Check create the stream when it does not exist
	// (ZEST_NATS_CREATE_STREAM=true). Off by default: a missing stream is an
	// error.
	CreateStream bool
	// DuplicateWindow is the stream's duplicate window when the sink
	// creates it (ZEST_NATS_DUPLICATE_WINDOW, a Go duration). Default 2m,
	// the server's default. Exactly-once does not depend on it (see the
	// package doc); a longer one only saves reads after long outages.
	DuplicateWindow time.Duration
	// User and Password (ZEST_NATS_USER, ZEST_NATS_PASSWORD), Token
	// (ZEST_NATS_TOKEN) or CredsFile (ZEST_NATS_CREDS) authenticate the
	// connection. Never logged.
	User, Password, Token, CredsFile string
	// TLS is the TLS configuration; CAFile (ZEST_NATS_CA) adds a CA to it.
	// A tls:// URL turns TLS on.
	TLS    *tls.Config
	CAFile string
	// Timeout bounds each request to the server (a publish and its ack, a
	// read). Default 5s.
	Timeout time.Duration
	// Name is the connection's name, shown by the server. Default
	// "zest-mover".
	Name string
}

// Sink publishes entries to a JetStream stream.
//
// A Sink is safe for concurrent use.
type Sink struct {
	opts Options
	nc   *nats.Conn
	js   jetstream.JetStream

	mu struct {
		sync.Mutex
		stream jetstream.Stream // nil until first found
		last   map[string]tip   // subject → its last message, as far as the sink knows
	}
}

// maxKnownSubjects bounds the map of last sequences; beyond it, the map is
// emptied and re-read lazily (one read per subject).
const maxKnownSubjects = 100_000

func env(v *string, name string) {
	if *v == "" {
		*v = os.Getenv(name)
	}
}

func (o *Options) fill() error {
	env(&o.URL, "ZEST_NATS_URL")
	env(&o.Stream, "ZEST_NATS_STREAM")
	env(&o.User, "ZEST_NATS_USER")
	env(&o.Password, "ZEST_NATS_PASSWORD")
	env(&o.Token, "ZEST_NATS_TOKEN")
	env(&o.CredsFile, "ZEST_NATS_CREDS")
	env(&o.CAFile, "ZEST_NATS_CA")
	if v := os.Getenv("ZEST_NATS_CREATE_STREAM"); v != "" && !o.CreateStream {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("natssink: ZEST_NATS_CREATE_STREAM is %q, want true or false", v)
		}
		o.CreateStream = b
	}
	if v := os.Getenv("ZEST_NATS_DUPLICATE_WINDOW"); v != "" && o.DuplicateWindow == 0 {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("natssink: ZEST_NATS_DUPLICATE_WINDOW is %q, want a positive duration such as 10m", v)
		}
		o.DuplicateWindow = d
	}
	var errs []error
	if o.URL == "" {
		errs = append(errs, errors.New("URL is empty: set Options.URL or ZEST_NATS_URL"))
	}
	if o.Stream == "" || strings.ContainsAny(o.Stream, ". *>\t") {
		errs = append(errs, fmt.Errorf("Stream %q is not a stream name: set Options.Stream or ZEST_NATS_STREAM", o.Stream))
	}
	if o.DuplicateWindow < 0 || o.Timeout < 0 {
		errs = append(errs, errors.New("DuplicateWindow and Timeout must not be negative"))
	}
	if o.User != "" && o.Token != "" {
		errs = append(errs, errors.New("User and Token are both set: choose one"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("natssink: invalid options: %w", errors.Join(errs...))
	}
	if len(o.Subjects) == 0 {
		o.Subjects = []string{o.Stream + ".>"}
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Name == "" {
		o.Name = "zest-mover"
	}
	return nil
}

// New returns a sink for the server and stream in opts (nil for the
// environment only). It starts connecting, and keeps reconnecting, in the
// background: a server that is down is not an error here. Call Check to
// know that the server, the credentials and the stream are right.
func New(opts *Options) (*Sink, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.fill(); err != nil {
		return nil, err
	}
	nopts := []nats.Option{
		nats.Name(o.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1), // fail publishes while disconnected; the mover retries
		nats.Timeout(o.Timeout),
		nats.NoCallbacksAfterClientClose(),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}), // errors reach Apply and Check
	}
	switch {
	case o.User != "":
		nopts = append(nopts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		nopts = append(nopts, nats.Token(o.Token))
	}
	if o.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLS != nil {
		nopts = append(nopts, nats.Secure(o.TLS))
	}
	if o.CAFile != "" {
		nopts = append(nopts, nats.RootCAs(o.CAFile))
	}
	nc, err := nats.Connect(o.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("natssink: connect to %s: %w", redact(o.URL), err)
	}
	// A pipelined publish (ApplyBatch) whose ack does not come fails after
	// Timeout, as a synchronous one does.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(o.Timeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natssink: %w", err)
	}
	s := &Sink{opts: o, nc: nc, js: js}
	s.mu.last = make(map[string]tip)
	return s, nil
}

// redact drops credentials from a URL for messages.
func redact(url string) string {
	var out []string
	for _, u := range strings.Split(url, ",") {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if i := strings.Index(u, "://"); i >= 0 && i < at {
				u = u[:i+3] + "***" + u[at:]
			} else {
				u = "***" + u[at:]
			}
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

// Close closes the connection. The sink is not usable after.
func (s *Sink) Close() { s.nc.Close() }

// Conn returns the underlying connection.
func (s *Sink) Conn() *nats.Conn { return s.nc }

// JetStream returns the JetStream context the sink publishes with.
func (s *Sink) JetStream() jetstream.JetStream { return s.js }

// Check waits (until ctx ends) for the connection, and reports a clear
// error if the server cannot be reached, refuses the credentials, has no
// JetStream, or has no such stream (which it creates with CreateStream).
func (s *Sink) Check(ctx context.Context) error {
	for !s.nc.IsConnected() {
		closed := s.nc.IsClosed()
		if !closed {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
				continue
			}
		}
		cause := s.nc.LastError()
		switch {
		case cause != nil && (errors.Is(cause, nats.ErrAuthorization) || strings.Contains(strings.ToLower(cause.Error()), "authorization")):
			return fmt.Errorf("natssink: %s rejected the credentials (check ZEST_NATS_USER/PASSWORD/TOKEN/CREDS): %w", redact(s.opts.URL), cause)
		case cause == nil && closed:
			return fmt.Errorf("natssink: connection to %s is closed", redact(s.opts.URL))
		case cause == nil:
			cause = ctx.Err()
		}
		return fmt.Errorf("natssink: cannot reach %s: %w", redact(s.opts.URL), cause)
	}
	_, err := s.stream(ctx)
	return err
}

// stream returns the stream, looking it up (or creating it) the first time.
func (s *Sink) stream(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	st := s.mu.stream
	s.mu.Unlock()
	if st != nil {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	st, err := s.js.Stream(ctx, s.opts.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && s.opts.CreateStream:
		st, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name: s.opts.Stream, Subjects: s.opts.Subjects, Storage: jetstream.FileStorage, Duplicates: s.opts.DuplicateWindow,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = s.js.Stream(ctx, s.opts.Stream)
		}
		if err != nil {
			return nil, classify(fmt.Errorf("natssink: create stream %q: %w", s.opts.Stream, err))
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, mover.Permanent(fmt.Errorf("natssink: stream %q does not exist (Options.CreateStream is off)", s.opts.Stream))
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return nil, mover.Permanent(fmt.Errorf("natssink: JetStream is not enabled on %s: %w", redact(s.opts.URL), err))
	case err != nil:
		return nil, classify(fmt.Errorf("natssink: stream %q: %w", s.opts.Stream, err))
	}
	s.mu.Lock()
	s.mu.stream = st
	s.mu.Unlock()
	return st, nil
}
