package effectqueue

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/stm"
)

// TestGatherTargetNeverExceedsCommitters: in Sync mode each committer has
// at most one commit in flight, so the group the writer gathers for can
// never need more commits than there are committers. A target above that
// cannot be reached, and the writer waits out its timeout on every such
// write (it did, on 3-8% of the writes at 64 committers, when the target
// counted the released committers that had already queued again). Checked
// with committers that commit back to back, so that released ones requeue
// while the writer is still releasing; the check is not vacuous: the
// writer must have gathered for more than one commit.
func TestGatherTargetNeverExceedsCommitters(t *testing.T) {
	db, err := stm.Open(nil)
	require.NoError(t, err)
	q, err := Open(db, &Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer q.Close()

	const committers, each = 32, 120
	errs := make(chan error, committers)
	var wg sync.WaitGroup
	for range committers {
		wg.Go(func() {
			for range each {
				if err := db.Run(context.Background(), func(tx *stm.Tx) error {
					return q.Enqueue(tx, Entry{Kind: "k", Payload: []byte("p")})
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	q.w.mu.Lock()
	maxWant := q.w.mu.maxWant
	q.w.mu.Unlock()
	t.Logf("largest gather target %d, %d committers, %d writes for %d commits", maxWant, committers, q.Stats().Writes, committers*each)
	require.Greater(t, maxWant, 1, "the writer never gathered a group: the check below would be vacuous")
	require.LessOrEqual(t, maxWant, committers, "the writer waited for more commits than there are committers")
}
