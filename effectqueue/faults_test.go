package effectqueue_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// commitLoad runs goroutines that commit until stop is closed or their
// commit fails; half of the transactions write a durable record and enqueue
// an entry, the others only write the record. It returns the ids of the
// transactions whose Run returned nil, and every error.
func commitLoad(db *stm.DB, q *effectqueue.Queue, t *table.Table[string, int], goroutines int, stop <-chan struct{}, onCommit func()) (acked []string, errs []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("%d.%d", g, i)
				err := db.Run(context.Background(), func(tx *stm.Tx) error {
					t.Put(tx, id, i)
					if i%2 == 1 {
						return nil
					}
					return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte(id)})
				})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					acked = append(acked, id)
				}
				mu.Unlock()
				if err != nil {
					return
				}
				if onCommit != nil {
					onCommit()
				}
			}
		})
	}
	wg.Wait()
	return acked, errs
}

// TestStorageFaultClassified closes the Badger under a queue (the owner's
// Badger, so that the queue cannot prevent it) while 8 goroutines commit,
// round after round. Every commit the fault catches must get an error of
// the engine, stm.ErrOutcomeUnknown (applied in memory, not known to be on
// disk) or stm.ErrStopped (refused), with Badger's error only inside: never
// the storage's error as the result. After a reopen, every commit that
// returned nil is on disk.
//
// Before the fix, a commit whose body ran while the write failed reached
// the queue after the failure and got the stored write error as is: "stm:
// commit: effectqueue: write: Writes are blocked, possibly due to DropAll or
// Close", which is neither.
func TestStorageFaultClassified(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	var kinds = map[string]int{}
	for round := range rounds {
		dir := t.TempDir()
		bdb, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).WithMemTableSize(16 << 20))
		require.NoError(t, err)
		db, _ := stm.Open(&stm.Options{Logger: quiet})
		q, err := effectqueue.Open(db, &effectqueue.Options{Badger: bdb, Logger: quiet})
		require.NoError(t, err)
		tbl, err := table.NewDurable[string, int](db, "t", nil)
		require.NoError(t, err)

		faultAt := int64(20 + r.IntN(100))
		var n atomic.Int64
		var once sync.Once
		acked, errs := commitLoad(db, q, tbl, 8, nil, func() {
			if n.Add(1) == faultAt {
				once.Do(func() { _ = bdb.Close() })
			}
		})
		require.NotEmpty(t, errs)
		for _, err := range errs {
			switch {
			case errors.Is(err, stm.ErrOutcomeUnknown):
				kinds["outcome unknown"]++
			case errors.Is(err, stm.ErrStopped):
				kinds["stopped"]++
			default:
				t.Errorf("round %d: a commit caught by the fault got an unclassified error: %v", round, err)
			}
		}
		_ = q.Close()

		_, q = openQueue(t, dir, nil)
		onDisk := map[string]bool{}
		for _, it := range readAll(t, q) {
			onDisk[string(it.Payload)] = true
		}
		require.NoError(t, q.Close())
		for _, id := range acked {
			var i int
			fmt.Sscanf(id[strings.Index(id, ".")+1:], "%d", &i)
			if i%2 == 0 {
				assert.True(t, onDisk[id], "round %d: acknowledged commit %s lost", round, id)
			}
		}
	}
	t.Logf("errors of the commits the faults caught: %v", kinds)
}

// TestCloseRacingCommits closes the queue while 8 goroutines commit. Each
// commit returns nil (and is then on disk after a reopen) or an error of
// Zest: effectqueue.ErrClosed (the queue closed before the commit reached
// it) or stm.ErrNoLog (a commit with only durable table records, after the
// queue detached). Consumer calls racing Close return ErrClosed, never a
// Badger error, and nothing panics. Every commit that returned nil is on
// disk after a reopen.
func TestCloseRacingCommits(t *testing.T) {
	rounds := 4
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		dir := t.TempDir()
		db, q := openQueue(t, dir, &effectqueue.Options{Logger: quiet})
		tbl, err := table.NewDurable[string, int](db, "t", nil)
		require.NoError(t, err)
		stop := make(chan struct{})
		var n atomic.Int64
		closed := make(chan error, 1)
		var once sync.Once
		// Consumers read and ack while Close runs.
		var consumers sync.WaitGroup
		consumerErrs := make(chan error, 16)
		for range 2 {
			consumers.Go(func() {
				for i := uint64(0); ; i++ {
					_, err := q.Read(context.Background(), 0, 16)
					if err == nil {
						_, err = q.DeadLetters(context.Background(), 0, 4)
					}
					if err == nil {
						err = q.SetConsumerState(context.Background(), "c", i)
					}
					if err != nil {
						consumerErrs <- err
						return
					}
				}
			})
		}
		acked, errs := commitLoad(db, q, tbl, 8, stop, func() {
			if n.Add(1) == int64(30+10*round) {
				once.Do(func() { go func() { closed <- q.Close(); close(stop) }() })
			}
		})
		require.NoError(t, <-closed)
		// Every committed value is durable now: a transaction that reads
		// them all must not wait (a reader of the last commit once waited
		// forever, when the writer reported it durable before stm had
		// recorded it as pending).
		read, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = db.Run(read, func(tx *stm.Tx) error {
			tbl.Scan(tx, func(string, int) bool { return true })
			return nil
		})
		cancel()
		require.NoError(t, err, "round %d: reading the committed values after Close", round)
		consumers.Wait()
		close(consumerErrs)
		for err := range consumerErrs {
			assert.ErrorIs(t, err, effectqueue.ErrClosed, "round %d: a consumer racing Close", round)
		}
		for _, err := range errs {
			if !errors.Is(err, effectqueue.ErrClosed) && !errors.Is(err, stm.ErrNoLog) {
				t.Errorf("round %d: a commit racing Close got %v", round, err)
			}
		}
		_, q = openQueue(t, dir, nil)
		onDisk := map[string]bool{}
		for _, it := range readAll(t, q) {
			onDisk[string(it.Payload)] = true
		}
		require.NoError(t, q.Close())
		for _, id := range acked {
			var i int
			fmt.Sscanf(id[strings.Index(id, ".")+1:], "%d", &i)
			if i%2 == 0 {
				assert.True(t, onDisk[id], "round %d: acknowledged commit %s lost", round, id)
			}
		}
		t.Logf("round %d: %d commits returned nil, %d errors", round, len(acked), len(errs))
	}
}
