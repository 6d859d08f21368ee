package effectqueue_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/stm"
)

const crashChildEnv = "ZEST_EFFECTQUEUE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild commits transactions of 1 to 3 entries from 4 goroutines
// until it is killed, printing "ack <tx> <entries>" after each commit that
// Run acknowledged.
func crashChild(dir string) {
	db, err := stm.Open(nil)
	if err != nil {
		panic(err)
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	var mu sync.Mutex
	var ids atomic.Uint64
	base := uint64(os.Getpid()) << 32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				tx := base | ids.Add(1)
				n := int(tx%3) + 1
				err := db.Run(context.Background(), func(t *stm.Tx) error {
					for i := range n {
						p := fmt.Sprintf("%d:%d:%d", tx, i, n)
						if err := q.Enqueue(t, effectqueue.Entry{Kind: "k", Key: "crash", Payload: []byte(p)}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("ack %d %d\n", tx, n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrashKill9 kills a committing process with SIGKILL at random moments,
// 24 times, and checks after each restart that:
//   - every acknowledged transaction's entries are present;
//   - sequence numbers have no gaps, from 1 to the head;
//   - every transaction's entries are all present or all absent, and
//     consecutive;
//   - numbering continues after the last entry of the previous run.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: spawns and kills 24 processes")
	}
	dir := t.TempDir()
	s := uint64(rand.Int64())
	t.Logf("seed %d", s)
	r := rand.New(rand.NewPCG(s, 0))
	acked := map[uint64]int{}
	var lastHead uint64
	for round := range 24 {
		killAfter := 1 + r.IntN(80)
		seen := 0
		crashtest.Run(t, []string{crashChildEnv + "=" + dir}, func(line string) bool {
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "ack" {
				return false
			}
			tx, _ := strconv.ParseUint(f[1], 10, 64)
			n, _ := strconv.Atoi(f[2])
			acked[tx] = n
			seen++
			return seen == killAfter
		})
		require.GreaterOrEqual(t, seen, killAfter, "round %d: the child died before it was killed", round)

		_, q := openQueue(t, dir, nil)
		items := readAll(t, q)
		require.NoError(t, q.Close())
		byTx := map[uint64][]uint64{}
		for i, it := range items {
			require.Equal(t, uint64(i+1), it.Seq, "round %d: gap in sequence numbers", round)
			var tx uint64
			var idx, n int
			_, err := fmt.Sscanf(string(it.Payload), "%d:%d:%d", &tx, &idx, &n)
			require.NoError(t, err)
			require.Equal(t, len(byTx[tx]), idx, "round %d: tx %d entries out of order", round, tx)
			byTx[tx] = append(byTx[tx], it.Seq)
		}
		for tx, seqs := range byTx {
			n := int(tx%3) + 1
			require.Len(t, seqs, n, "round %d: tx %d is partly written", round, tx)
			require.Equal(t, seqs[0]+uint64(n-1), seqs[n-1], "round %d: tx %d not consecutive", round, tx)
		}
		for tx, n := range acked {
			require.Len(t, byTx[tx], n, "round %d: acknowledged tx %d lost", round, tx)
		}
		head := uint64(len(items))
		require.GreaterOrEqual(t, head, lastHead)
		t.Logf("round %d: killed after %d acks; %d entries on disk (+%d), %d acknowledged transactions so far",
			round, killAfter, head, head-lastHead, len(acked))
		lastHead = head
	}
}
