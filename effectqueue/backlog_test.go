package effectqueue_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// checkBacklog compares Depth, OldestAge and Stats with what Read returns:
// Depth is the number of pending entries, and OldestAge the age of the
// first one (0 only when none is pending). Call it when nothing commits or
// acks.
func checkBacklog(t *testing.T, q *effectqueue.Queue, format string, args ...any) bool {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	items := readAll(t, q)
	before := time.Now()
	age, st := q.OldestAge(), q.Stats()
	ok := assert.Equal(t, int64(len(items)), q.Depth(), msg)
	ok = assert.Equal(t, int64(len(items)), st.Depth, msg) && ok
	if len(items) == 0 {
		return assert.Zero(t, age, msg) && ok
	}
	want := before.Sub(items[0].Committed)
	ok = assert.Positive(t, age, "OldestAge is 0 with %d entries pending: %s", len(items), msg) && ok
	return assert.InDelta(t, float64(want), float64(age), float64(100*time.Millisecond),
		"OldestAge %v, the first pending entry (seq %d) committed %v ago: %s", age, items[0].Seq, want, msg) && ok
}

// TestOldestAgeAckRacingCommit: an ack of the last pending entry races with
// a commit. The new entry is pending, so OldestAge must be its age.
//
// Before the fix, the ack read the head before it waited for its Badger
// write; it found nothing pending up to that head and set the oldest time
// to zero, although the entry committed meanwhile was pending: OldestAge
// reported 0 with a backlog until the next ack moved the cursor.
func TestOldestAgeAckRacingCommit(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	commit := func() error {
		return db.Run(ctx, func(tx *stm.Tx) error { return q.Enqueue(tx, effectqueue.Entry{Kind: "k"}) })
	}
	rounds := 60
	if testing.Short() {
		rounds = 20
	}
	bad := 0
	for round := range rounds {
		require.NoError(t, commit())
		last := q.Head()
		start := make(chan struct{})
		acked, committed := make(chan error, 1), make(chan error, 1)
		go func() { <-start; acked <- q.Ack(ctx, last) }()
		go func() { <-start; committed <- commit() }()
		close(start)
		require.NoError(t, <-acked)
		require.NoError(t, <-committed)
		if !checkBacklog(t, q, "round %d", round) {
			bad++
		}
		require.NoError(t, q.Ack(ctx, q.Head()))
		checkBacklog(t, q, "round %d, drained", round)
	}
	assert.Zero(t, bad, "rounds with a wrong backlog, of %d", rounds)
}

// TestBacklogOutOfOrderAcks acks and dead-letters entries in a random order,
// one or several at a time, and checks the backlog after each step against
// what Read returns.
func TestBacklogOutOfOrderAcks(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for batch := range 4 {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			for range 1 + r.IntN(6) {
				if err := q.Enqueue(tx, effectqueue.Entry{Kind: "k"}); err != nil {
					return err
				}
			}
			return nil
		}))
		items := readAll(t, q)
		r.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		// Leave a few pending for the next batch.
		for len(items) > 2 {
			n := 1 + r.IntN(min(3, len(items)-2))
			var seqs []uint64
			for _, it := range items[:n] {
				seqs = append(seqs, it.Seq)
			}
			items = items[n:]
			if r.IntN(5) == 0 {
				require.NoError(t, q.DeadLetter(ctx, seqs[0], "test"))
				seqs = seqs[1:]
			}
			require.NoError(t, q.Ack(ctx, seqs...))
			checkBacklog(t, q, "batch %d after removing %v", batch, seqs)
		}
	}
}
