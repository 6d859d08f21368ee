package natssink_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/natstest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/natssink"
	"github.com/zest-stm/zest/stm"
)

var quiet = slog.New(slog.DiscardHandler)

type env struct {
	srv  *natstest.Server
	sink *natssink.Sink
	db   *stm.DB
	q    *effectqueue.Queue
}

// setup starts a server and a queue, and a sink on stream ZEST (created,
// subjects ZEST.>) with o's other fields.
func setup(t *testing.T, o *natssink.Options) *env {
	t.Helper()
	e := &env{srv: natstest.Start(t, nil)}
	var opts natssink.Options
	if o != nil {
		opts = *o
	}
	opts.URL, opts.Stream, opts.CreateStream = e.srv.URL, "ZEST", true
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Second
	}
	var err error
	e.sink, err = natssink.New(&opts)
	require.NoError(t, err)
	t.Cleanup(e.sink.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, e.sink.Check(ctx))
	e.db, err = stm.Open(nil)
	require.NoError(t, err)
	e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: t.TempDir(), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.q.Close() })
	return e
}

func (e *env) commit(t *testing.T, entries ...effectqueue.Entry) []uint64 {
	t.Helper()
	var seqs []uint64
	head := e.q.Head()
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error {
		for _, en := range entries {
			if err := e.q.Enqueue(tx, en); err != nil {
				return err
			}
		}
		return nil
	}))
	for i := range entries {
		seqs = append(seqs, head+uint64(i)+1)
	}
	return seqs
}

func (e *env) mover(t *testing.T, sink mover.Sink, o *mover.Options) (*mover.Mover, func() error) {
	t.Helper()
	opts := mover.Options{BaseBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, MaxAttempts: 10_000, Logger: quiet}
	if o != nil {
		opts = *o
	}
	m, err := mover.New(e.q, map[string]mover.Sink{"nats": sink}, &opts)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = m.Shutdown(ctx)
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return m, stop
}

func drain(t *testing.T, m *mover.Mover) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, m.WaitDrained(ctx), "stats %+v", m.Stats())
}

// stored returns every message of the stream, in stream order.
func stored(t *testing.T, e *env) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := e.sink.JetStream().Stream(ctx, "ZEST")
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("ZEST.>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		require.NoError(t, err)
		out = append(out, m)
		seq = m.Sequence
	}
}

// checkExactlyOnceInOrder checks that the stream holds each committed entry
// of this queue exactly once (by Zest-Seq), and per subject in commit
// order; want maps subject to the committed sequence numbers, in order.
func checkExactlyOnceInOrder(t *testing.T, e *env, want map[string][]uint64) {
	t.Helper()
	got := map[string][]uint64{}
	seen := map[uint64]int{}
	for _, m := range stored(t, e) {
		if m.Header.Get(natssink.HeaderWriter) != e.q.ID() {
			continue
		}
		seq, err := strconv.ParseUint(m.Header.Get(natssink.HeaderSeq), 10, 64)
		require.NoError(t, err)
		seen[seq]++
		got[m.Subject] = append(got[m.Subject], seq)
		assert.Equal(t, fmt.Sprintf("%s-%d", e.q.ID(), seq), m.Header.Get(jetstream.MsgIDHeader))
	}
	for seq, n := range seen {
		assert.Equal(t, 1, n, "entry %d stored %d times", seq, n)
	}
	assert.Equal(t, want, got)
}

func TestPublishInOrder(t *testing.T) {
	e := setup(t, nil)
	want := map[string][]uint64{}
	for i := range 60 {
		subj := fmt.Sprintf("ZEST.player%d", i%6)
		seqs := e.commit(t, natssink.Publish(subj, []byte(strconv.Itoa(i)), map[string]string{"Content-Type": "text/plain"}))
		want[subj] = append(want[subj], seqs...)
	}
	m, stop := e.mover(t, e.sink, &mover.Options{Concurrency: 3, Logger: quiet})
	drain(t, m)
	require.NoError(t, stop())
	checkExactlyOnceInOrder(t, e, want)
	for _, msg := range stored(t, e) {
		if msg.Header.Get(natssink.HeaderSeq) == "1" {
			assert.Equal(t, "text/plain", msg.Header.Get("Content-Type"))
			assert.Equal(t, "0", string(msg.Data))
			assert.Equal(t, "ZEST.player0", msg.Subject)
		}
	}
	assert.Equal(t, uint64(60), m.Stats().BySink["nats"].Delivered)
}

// chaos wraps the sink: it can report a failure for a publish that landed
// (an ack lost on the way back), and counts applies.
type chaos struct {
	mover.Sink
	loseAck func(d mover.Delivery) bool
	applies atomic.Int64
	lost    atomic.Int64
}

func (c *chaos) Apply(ctx context.Context, d mover.Delivery) error {
	c.applies.Add(1)
	err := c.Sink.Apply(ctx, d)
	if err == nil && c.loseAck != nil && c.loseAck(d) {
		c.lost.Add(1)
		return errors.New("injected: the ack was lost")
	}
	return err
}

// TestServerRestartsMidDelivery: while the mover publishes 400 entries on
// 8 subjects, the server is shut down and restarted 3 times (store kept),
// and one ack in 7 is lost after its publish landed. Every committed entry
// is in the stream exactly once, in per-subject commit order.
func TestServerRestartsMidDelivery(t *testing.T) {
	e := setup(t, nil)
	want := map[string][]uint64{}
	const n, subjects = 400, 8
	for i := 0; i < n; i += 20 {
		var batch []effectqueue.Entry
		for j := i; j < i+20; j++ {
			batch = append(batch, natssink.Publish(fmt.Sprintf("ZEST.s%d", j%subjects), []byte(strconv.Itoa(j)), nil))
		}
		seqs := e.commit(t, batch...)
		for k, s := range seqs {
			want[batch[k].Key] = append(want[batch[k].Key], s)
		}
	}
	c := &chaos{Sink: e.sink, loseAck: func(d mover.Delivery) bool { return d.Seq%7 == 0 && d.Attempt == 1 }}
	m, stop := e.mover(t, c, nil)
	for round := 1; round <= 3; round++ {
		target := int64(round * n / 4)
		waitFor(t, fmt.Sprintf("%d applies", target), func() bool { return c.applies.Load() >= target })
		e.srv.Stop()
		retries := m.Stats().Retries
		waitFor(t, "a failed attempt while the server is down", func() bool { return m.Stats().Retries > retries+3 })
		require.NoError(t, e.srv.Restart())
	}
	drain(t, m)
	require.NoError(t, stop())
	checkExactlyOnceInOrder(t, e, want)
	st := m.Stats()
	assert.Zero(t, st.DeadLettered)
	assert.Positive(t, c.lost.Load())
	t.Logf("applies %d, lost acks %d, stats %+v", c.applies.Load(), c.lost.Load(), st)
}

// TestReplayAfterWindowNoDuplicate: every publish lands but its ack is
// lost, and the process stops before acking (the mover is abandoned); the
// duplicate window (100ms, the server's minimum) passes; a new process (new
// sink, new mover) replays the entries. The chain check finds them: none
// is stored twice, although Nats-Msg-Id no longer deduplicates.
func TestReplayAfterWindowNoDuplicate(t *testing.T) {
	e := setup(t, &natssink.Options{DuplicateWindow: 100 * time.Millisecond})
	want := map[string][]uint64{}
	for i := range 30 {
		subj := fmt.Sprintf("ZEST.p%d", i%3)
		want[subj] = append(want[subj], e.commit(t, natssink.Publish(subj, []byte("x"), nil))...)
	}
	c := &chaos{Sink: e.sink, loseAck: func(mover.Delivery) bool { return true }}
	m, _ := e.mover(t, c, &mover.Options{BaseBackoff: time.Hour, MaxBackoff: time.Hour, Concurrency: 3, Logger: quiet})
	waitFor(t, "each entry's first attempt", func() bool { return m.Stats().Retries == 3 })
	// Lanes are parked for an hour; each holds its first entry. Abandon.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = m.Shutdown(ctx)
	landed := len(stored(t, e))
	assert.Equal(t, 3, landed)

	<-time.After(300 * time.Millisecond) // let the duplicate window pass (not a synchronisation)
	fresh, err := natssink.New(&natssink.Options{URL: e.srv.URL, Stream: "ZEST"})
	require.NoError(t, err)
	defer fresh.Close()
	m2, stop2 := e.mover(t, fresh, nil)
	drain(t, m2)
	require.NoError(t, stop2())
	checkExactlyOnceInOrder(t, e, want)
}

// TestForeignWriterIsFenced: a message of another writer lands on a
// subject between two of this queue's entries; the entry whose chain it
// broke is dead-lettered (class conflict), the subject's later entries
// and other subjects go on.
func TestForeignWriterIsFenced(t *testing.T) {
	e := setup(t, nil)
	e.commit(t, natssink.Publish("ZEST.a", []byte("1"), nil), natssink.Publish("ZEST.b", []byte("1"), nil))
	m, stop := e.mover(t, e.sink, nil)
	drain(t, m)
	_, err := e.sink.JetStream().Publish(context.Background(), "ZEST.a", []byte("intruder"))
	require.NoError(t, err)
	e.commit(t, natssink.Publish("ZEST.a", []byte("2"), nil))
	drain(t, m)
	e.commit(t, natssink.Publish("ZEST.a", []byte("3"), nil), natssink.Publish("ZEST.b", []byte("2"), nil))
	drain(t, m)
	require.NoError(t, stop())
	dead, err := e.q.DeadLetters(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, uint64(3), dead[0].Seq)
	assert.Contains(t, dead[0].Reason, "another writer")
	var bodies []string
	for _, msg := range stored(t, e) {
		if msg.Subject == "ZEST.a" {
			bodies = append(bodies, string(msg.Data))
		}
	}
	assert.Equal(t, []string{"1", "intruder", "3"}, bodies)
}

// TestPurgedSubjectRechains: the subject's messages are purged between two
// entries; the sink notices the chain moved back and publishes.
func TestPurgedSubjectRechains(t *testing.T) {
	e := setup(t, nil)
	e.commit(t, natssink.Publish("ZEST.p", []byte("1"), nil))
	m, stop := e.mover(t, e.sink, nil)
	drain(t, m)
	st, err := e.sink.JetStream().Stream(context.Background(), "ZEST")
	require.NoError(t, err)
	require.NoError(t, st.Purge(context.Background(), jetstream.WithPurgeSubject("ZEST.p")))
	e.commit(t, natssink.Publish("ZEST.p", []byte("2"), nil))
	drain(t, m)
	require.NoError(t, stop())
	msgs := stored(t, e)
	require.Len(t, msgs, 1)
	assert.Equal(t, "2", string(msgs[0].Data))
	assert.Zero(t, m.Stats().DeadLettered)
}

func TestBadEntries(t *testing.T) {
	e := setup(t, nil)
	e.commit(t,
		natssink.Publish("ZEST.ok", []byte("1"), nil),
		natssink.Publish("ZEST.*", []byte("wild"), nil),
		natssink.Publish("ZEST..x", []byte("empty token"), nil),
		natssink.Publish("OTHER.x", []byte("no stream"), nil),
		effectqueue.Entry{Kind: "nats.request", Key: "ZEST.x"})
	m, stop := e.mover(t, e.sink, &mover.Options{BaseBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, MaxAttempts: 3, Logger: quiet})
	drain(t, m)
	require.NoError(t, stop())
	dead, err := e.q.DeadLetters(context.Background(), 0, 10)
	require.NoError(t, err)
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[d.Key+" "+d.Kind] = d.Reason
	}
	assert.Len(t, dead, 4)
	assert.Contains(t, reasons["ZEST.* nats.publish"], "not a subject")
	assert.Contains(t, reasons["ZEST..x nats.publish"], "not a subject")
	assert.Contains(t, reasons["ZEST.x nats.request"], "unknown kind")
	assert.Contains(t, reasons["OTHER.x nats.publish"], "OTHER.x")
	assert.Len(t, stored(t, e), 1)
}

func TestOptionsAndCheck(t *testing.T) {
	ctx := context.Background()
	t.Setenv("ZEST_NATS_URL", "")
	t.Setenv("ZEST_NATS_STREAM", "")
	_, err := natssink.New(nil)
	assert.ErrorContains(t, err, "URL is empty")
	assert.ErrorContains(t, err, "not a stream name")
	_, err = natssink.New(&natssink.Options{URL: "nats://x", Stream: "a.b"})
	assert.ErrorContains(t, err, `Stream "a.b"`)
	t.Setenv("ZEST_NATS_DUPLICATE_WINDOW", "soon")
	_, err = natssink.New(&natssink.Options{URL: "nats://x", Stream: "S"})
	assert.ErrorContains(t, err, "ZEST_NATS_DUPLICATE_WINDOW")
	t.Setenv("ZEST_NATS_DUPLICATE_WINDOW", "")

	// Nothing listens: New succeeds (it reconnects in the background),
	// Check says the server cannot be reached.
	dead := natstest.Start(t, nil)
	dead.Stop()
	s, err := natssink.New(&natssink.Options{URL: dead.URL, Stream: "S"})
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	assert.ErrorContains(t, s.Check(short), "cannot reach "+dead.URL)
	cancel()
	s.Close()

	// Credentials: wrong ones are rejected, clearly, and never printed.
	secure := natstest.Start(t, &natstest.Options{User: "game", Password: "s3cret-pw"})
	s, err = natssink.New(&natssink.Options{URL: secure.URL, Stream: "S", User: "game", Password: "wrong-pw"})
	require.NoError(t, err)
	short, cancel = context.WithTimeout(ctx, time.Second)
	err = s.Check(short)
	cancel()
	s.Close()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rejected the credentials")
	assert.NotContains(t, err.Error(), "wrong-pw")

	// Right credentials through the environment; a missing stream.
	t.Setenv("ZEST_NATS_URL", secure.URL)
	t.Setenv("ZEST_NATS_STREAM", "ORDERS")
	t.Setenv("ZEST_NATS_USER", "game")
	t.Setenv("ZEST_NATS_PASSWORD", "s3cret-pw")
	s, err = natssink.New(nil)
	require.NoError(t, err)
	short, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	assert.ErrorContains(t, s.Check(short), `stream "ORDERS" does not exist`)
	s.Close()
	t.Setenv("ZEST_NATS_CREATE_STREAM", "true")
	s, err = natssink.New(&natssink.Options{DuplicateWindow: 10 * time.Minute})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Check(short))
	info, err := s.JetStream().Stream(short, "ORDERS")
	require.NoError(t, err)
	assert.Equal(t, 10*time.Minute, info.CachedInfo().Config.Duplicates)
	assert.Equal(t, []string{"ORDERS.>"}, info.CachedInfo().Config.Subjects)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
