package mover

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// The mover's unit tests run a real queue (Badger in a temp dir) against
// fakeSink, an in-memory sink whose failures the test decides.

var quiet = slog.New(slog.DiscardHandler)

// fakeSink records confirmed applies per key and fails as fail says.
//
// A fakeSink is safe for concurrent use.
type fakeSink struct {
	fail func(d Delivery) error // nil: always succeed
	// block, if set, is received from before each apply returns (or the
	// apply's ctx ends).
	block chan struct{}
	// entered, if set, gets each delivery as the apply starts.
	entered chan Delivery

	calls atomic.Int64
	mu    sync.Mutex
	byKey map[string][]uint64 // confirmed seqs, in apply order
	seen  []Delivery          // every attempt
	inKey map[string]int      // applies in progress per key
	errs  []string            // invariant violations seen inside Apply
}

func newFake() *fakeSink { return &fakeSink{byKey: map[string][]uint64{}, inKey: map[string]int{}} }

func (f *fakeSink) Apply(ctx context.Context, d Delivery) error {
	f.calls.Add(1)
	f.mu.Lock()
	f.seen = append(f.seen, d)
	f.inKey[d.Key]++
	if f.inKey[d.Key] > 1 {
		f.errs = append(f.errs, "two applies at once on key "+d.Key)
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inKey[d.Key]--
		f.mu.Unlock()
	}()
	if f.entered != nil {
		f.entered <- d
	}
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.fail != nil {
		if err := f.fail(d); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.byKey[d.Key] = append(f.byKey[d.Key], d.Seq)
	f.mu.Unlock()
	return nil
}

func (f *fakeSink) applied() map[string][]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]uint64, len(f.byKey))
	for k, v := range f.byKey {
		out[k] = append([]uint64(nil), v...)
	}
	return out
}

func (f *fakeSink) attempts() []Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Delivery(nil), f.seen...)
}

// faultStore wraps a queue and fails the mover's state writes on demand.
type faultStore struct {
	*effectqueue.Queue
	failAcks, failDeadLetters atomic.Int64 // how many more writes fail
	ackCalls, deadCalls       atomic.Int64
}

var errDisk = errors.New("injected: disk write failed")

func (s *faultStore) Ack(ctx context.Context, seqs ...uint64) error {
	s.ackCalls.Add(1)
	if s.failAcks.Add(-1) >= 0 {
		return errDisk
	}
	return s.Queue.Ack(ctx, seqs...)
}

func (s *faultStore) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	s.deadCalls.Add(1)
	if s.failDeadLetters.Add(-1) >= 0 {
		return errDisk
	}
	return s.Queue.DeadLetter(ctx, seq, reason)
}

type qenv struct {
	db  *stm.DB
	q   *effectqueue.Queue
	dir string
}

func openQueue(t *testing.T, dir string) *qenv {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	db, err := stm.Open(nil)
	require.NoError(t, err)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: quiet})
	require.NoError(t, err)
	e := &qenv{db: db, q: q, dir: dir}
	t.Cleanup(func() { _ = q.Close() })
	return e
}

func (e *qenv) reopen(t *testing.T) {
	t.Helper()
	require.NoError(t, e.q.Close())
	n := openQueue(t, e.dir)
	e.db, e.q = n.db, n.q
}

// commit enqueues entries in one transaction.
func (e *qenv) commit(t *testing.T, entries ...effectqueue.Entry) {
	t.Helper()
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error {
		for _, en := range entries {
			if err := e.q.Enqueue(tx, en); err != nil {
				return err
			}
		}
		return nil
	}))
}

func put(key string) effectqueue.Entry {
	return effectqueue.Entry{Kind: "fake.put", Key: key, Payload: []byte(key)}
}

// fastOpts are options for tests: quick retries, quiet logs.
func fastOpts() *Options {
	return &Options{BaseBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, AckInterval: time.Millisecond, Logger: quiet}
}

// running is a Mover started by start.
type running struct {
	*Mover
	done chan struct{} // closed when Run returned
	err  error         // Run's error
}

func start(t *testing.T, st store, key *effectqueue.Queue, sink Sink, o *Options) *running {
	t.Helper()
	m, err := newMover(key, st, map[string]Sink{"fake": sink}, o)
	require.NoError(t, err)
	r := &running{Mover: m, done: make(chan struct{})}
	go func() { r.err = m.Run(context.Background()); close(r.done) }()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop shuts the mover down gracefully and returns Run's error.
func (r *running) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		return err
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runErr waits for Run to return and returns its error.
func (r *running) runErr() error {
	<-r.done
	return r.err
}

func drained(t *testing.T, m *Mover) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, m.WaitDrained(ctx), "stats %+v", m.Stats())
}

// eventually waits for cond, checking on a ticker, or fails after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
