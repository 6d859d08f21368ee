package mover

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
)

// batchFake is a BatchSink over a fakeSink: each delivery of a batch is
// applied by the fakeSink in its own goroutine (so the batch's applies
// really overlap), and the batch itself can panic or return a result of the
// wrong length, as batch says.
type batchFake struct {
	*fakeSink
	batch func(n int) string // "panic", "short" or ""

	batches, batched atomic.Int64 // ApplyBatch calls, deliveries in them
	mu               sync.Mutex
	dupKeys          []string // keys seen twice in one batch
}

func (b *batchFake) ApplyBatch(ctx context.Context, ds []Delivery) []error {
	b.batches.Add(1)
	b.batched.Add(int64(len(ds)))
	seen := map[string]bool{}
	for _, d := range ds {
		if seen[d.Key] {
			b.mu.Lock()
			b.dupKeys = append(b.dupKeys, d.Key)
			b.mu.Unlock()
		}
		seen[d.Key] = true
	}
	if b.batch != nil {
		switch b.batch(len(ds)) {
		case "panic":
			panic("batch sink bug")
		case "short":
			return make([]error, len(ds)-1)
		}
	}
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { errs[i] = b.Apply(ctx, d) })
	}
	wg.Wait()
	return errs
}

// plainOnly hides everything of a sink but Apply.
type plainOnly struct{ s Sink }

func (p plainOnly) Apply(ctx context.Context, d Delivery) error { return p.s.Apply(ctx, d) }

// TestBatchPerKeyOrder drives a BatchSink whose applies fail at random, whose
// batches sometimes panic or return too few results, and whose keys also
// get entries of a plain sink (served one at a time, in the lane's order),
// and one entry that fails permanently. It checks:
//   - every committed entry is confirmed exactly once, except the
//     permanent failure, which is dead-lettered;
//   - per key, confirmations follow sequence order, across both sinks;
//   - never two applies at once on one key, never one key twice in a batch;
//   - batches hold several keys (batching happened);
//   - the counters add up.
func TestBatchPerKeyOrder(t *testing.T) {
	s := seed(t)
	var rmu sync.Mutex
	rng := rand.New(rand.NewPCG(s, s^0x51ed))
	chance := func(n int) bool {
		rmu.Lock()
		defer rmu.Unlock()
		return rng.IntN(n) == 0
	}
	f := newFake()
	var poison atomic.Uint64
	f.fail = func(d Delivery) error {
		if d.Seq == poison.Load() {
			return Permanent(errors.New("poison"))
		}
		if chance(4) {
			return errors.New("flaky")
		}
		return nil
	}
	b := &batchFake{fakeSink: f, batch: func(n int) string {
		switch {
		case chance(25):
			return "panic"
		case n > 1 && chance(25):
			return "short"
		}
		return ""
	}}
	e := openQueue(t, "")
	const keys, perKey = 40, 12
	for i := range perKey {
		var entries []effectqueue.Entry
		for k := range keys {
			en := put(fmt.Sprintf("k%02d", (k*7+i)%keys))
			if (i+k)%5 == 0 {
				en.Kind = "plain.put"
			}
			entries = append(entries, en)
		}
		e.commit(t, entries...)
	}
	items, err := e.q.Read(context.Background(), 0, keys*perKey)
	require.NoError(t, err)
	poisoned := items[len(items)/2]
	require.Equal(t, "fake.put", poisoned.Kind)
	poison.Store(poisoned.Seq)
	want := map[string][]uint64{}
	for _, it := range items {
		if it.Seq != poisoned.Seq {
			want[it.Key] = append(want[it.Key], it.Seq)
		}
	}
	o := fastOpts()
	o.Concurrency, o.BatchSize, o.MaxAttempts = 3, 8, 1000
	m, err := newMover(e.q, e.q, map[string]Sink{"fake": b, "plain": plainOnly{f}}, o)
	require.NoError(t, err)
	r := &running{Mover: m, done: make(chan struct{})}
	go func() { r.err = m.Run(context.Background()); close(r.done) }()
	drained(t, m)
	require.NoError(t, r.stop())

	assert.Equal(t, want, f.applied())
	assert.Empty(t, f.errs, "applies at once on one key")
	assert.Empty(t, b.dupKeys, "keys twice in one batch")
	require.Positive(t, b.batches.Load())
	assert.Greater(t, float64(b.batched.Load())/float64(b.batches.Load()), 1.5, "mean batch size")
	dls, err := e.q.DeadLetters(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, poisoned.Seq, dls[0].Seq)
	st := m.Stats()
	assert.Equal(t, uint64(keys*perKey-1), st.Delivered)
	assert.Equal(t, uint64(1), st.DeadLettered)
	assert.Positive(t, st.Retries)
	assert.Zero(t, st.InFlight)
	for _, d := range f.attempts() {
		if d.Attempt > 1 {
			assert.True(t, d.MayHaveLanded, "retry %d of %d", d.Attempt, d.Seq)
		}
	}
}

// TestBatchSizeOne: BatchSize 1 turns batching off; a negative one is
// refused.
func TestBatchSizeOne(t *testing.T) {
	f := newFake()
	b := &batchFake{fakeSink: f}
	e := openQueue(t, "")
	e.commit(t, put("a"), put("b"), put("c"))
	o := fastOpts()
	o.BatchSize = 1
	m := start(t, e.q, e.q, b, o)
	drained(t, m.Mover)
	require.NoError(t, m.stop())
	assert.Zero(t, b.batches.Load())
	assert.Len(t, f.applied(), 3)
	_, err := newMover(e.q, e.q, map[string]Sink{"fake": b}, &Options{BatchSize: -1})
	assert.ErrorContains(t, err, "BatchSize")
}
