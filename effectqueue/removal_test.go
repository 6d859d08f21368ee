package effectqueue_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// TestRemovalModel runs random commits, acks (in any order, repeated, of
// entries already gone), dead letters, retry states, replays, discards and
// reopens against a model of which entries are pending and which are dead
// letters. After each step it checks, against the model: what Read returns
// (exactly the pending entries, in order), Depth, DeadLetterCount and what
// DeadLetters lists, that a retry state is kept until its entry is removed,
// and that OldestAge is positive exactly when something is pending.
//
// Acks are decided in memory (no read of the entry), so this is what shows
// that the in-memory view of the queue and what is stored agree, also after
// a reopen rebuilds the view from disk. The seed is printed.
func TestRemovalModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	db, q := openQueue(t, dir, nil)
	defer func() { _ = q.Close() }()
	ctx := context.Background()
	pending := map[uint64]bool{}
	dead := map[uint64]bool{}
	retry := map[uint64]int{}
	var head uint64
	steps := 150
	if testing.Short() {
		steps = 80
	}
	pick := func(m map[uint64]bool) (uint64, bool) {
		if len(m) == 0 {
			return 0, false
		}
		keys := make([]uint64, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys[r.IntN(len(keys))], true
	}
	for step := range steps {
		switch op := r.IntN(20); {
		case op < 6: // commit 1..5 entries
			n := 1 + r.IntN(5)
			require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
				for range n {
					if err := q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte{byte(step)}}); err != nil {
						return err
					}
				}
				return nil
			}))
			for range n {
				head++
				pending[head] = true
			}
		case op < 11: // ack a few, some twice, some already gone
			var seqs []uint64
			for range 1 + r.IntN(4) {
				if head == 0 {
					break
				}
				if s, ok := pick(pending); ok && r.IntN(2) == 0 {
					seqs = append(seqs, s)
				} else {
					seqs = append(seqs, 1+uint64(r.IntN(int(head))))
				}
			}
			if len(seqs) > 0 && r.IntN(3) == 0 {
				seqs = append(seqs, seqs[0])
			}
			require.NoError(t, q.Ack(ctx, seqs...), "step %d: ack %v", step, seqs)
			for _, s := range seqs {
				delete(pending, s)
				delete(retry, s)
			}
		case op < 13: // dead-letter one pending, or one not pending
			if s, ok := pick(pending); ok && r.IntN(4) > 0 {
				require.NoError(t, q.DeadLetter(ctx, s, "test"), "step %d", step)
				delete(pending, s)
				delete(retry, s)
				dead[s] = true
			} else if head > 0 {
				s := 1 + uint64(r.IntN(int(head)))
				if !pending[s] {
					err := q.DeadLetter(ctx, s, "test")
					require.True(t, errors.Is(err, effectqueue.ErrNotFound), "step %d: dead-letter %d not pending: %v", step, s, err)
				}
			}
		case op < 15: // retry state
			if s, ok := pick(pending); ok {
				retry[s]++
				require.NoError(t, q.SetRetryState(ctx, s, effectqueue.RetryState{Attempts: retry[s]}))
			}
		case op < 16: // replay a dead letter
			if s, ok := pick(dead); ok {
				n, err := q.Replay(ctx, s)
				require.NoError(t, err, "step %d", step)
				require.Equal(t, head+1, n, "step %d: replayed seq", step)
				head++
				pending[head] = true
				delete(dead, s)
			}
		case op < 17: // discard a dead letter
			if s, ok := pick(dead); ok {
				require.NoError(t, q.Discard(ctx, s), "step %d", step)
				delete(dead, s)
			}
		case op < 18: // an entry not committed yet
			require.Error(t, q.Ack(ctx, head+1), "step %d", step)
		default: // reopen
			require.NoError(t, q.Close())
			db, q = openQueue(t, dir, nil)
		}

		items := readAll(t, q)
		var got, want []uint64
		for _, it := range items {
			got = append(got, it.Seq)
		}
		for s := range pending {
			want = append(want, s)
		}
		slices.Sort(want)
		require.Equal(t, want, got, "step %d: Read", step)
		require.Equal(t, int64(len(want)), q.Depth(), "step %d: Depth", step)
		require.Equal(t, len(want) > 0, q.OldestAge() > 0, "step %d: OldestAge %v with %d pending", step, q.OldestAge(), len(want))
		require.Equal(t, int64(len(dead)), q.DeadLetterCount(), "step %d: DeadLetterCount", step)
		dls, err := q.DeadLetters(ctx, 0, 1<<20)
		require.NoError(t, err)
		require.Len(t, dls, len(dead), "step %d: DeadLetters", step)
		for _, s := range want {
			rs, err := q.RetryStateOf(s)
			require.NoError(t, err)
			require.Equal(t, retry[s], rs.Attempts, "step %d: retry state of %d", step, s)
		}
	}
}
