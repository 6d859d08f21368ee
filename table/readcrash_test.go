package table_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
	"github.com/zest-stm/zest/whilecommit"
)

const readerChildEnv = "ZEST_TABLE_READER_CHILD"

// readerChild increments a durable counter from two goroutines, and reads
// it from three others: a read-only transaction that prints "read N" when
// Run returned, an in-memory update that prints "copy N", and a hook that
// prints "hook N". None of them may print a value that a crash then loses.
func readerChild(dir string) {
	db, err := stm.Open(nil)
	if err != nil {
		panic(err)
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	counter, err := table.NewDurable[int, int64](db, "counter", nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	mirror, err := table.New[int, int64](db, "mirror")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Printf(format+"\n", args...)
		out.Unlock()
	}
	fmt.Println("ready")
	ctx := context.Background()
	fail := func(err error) {
		say("error %v", err)
		os.Exit(1)
	}
	for range 2 {
		go func() {
			for {
				err := db.Run(ctx, func(tx *stm.Tx) error {
					n, _ := counter.Get(tx, 0)
					counter.Put(tx, 0, n+1)
					return q.Enqueue(tx, effectqueue.Entry{Kind: "n", Payload: []byte(strconv.FormatInt(n+1, 10))})
				})
				if err != nil {
					fail(err)
				}
			}
		}()
	}
	go func() {
		for {
			n, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (int64, error) { n, _ := counter.Get(tx, 0); return n, nil })
			if err != nil {
				fail(err)
			}
			say("read %d", n)
		}
	}()
	go func() {
		for {
			var n int64
			err := db.Run(ctx, func(tx *stm.Tx) error {
				n, _ = counter.Get(tx, 0)
				mirror.Put(tx, 0, n)
				return nil
			})
			if err != nil {
				fail(err)
			}
			say("copy %d", n)
		}
	}()
	for {
		err := db.Run(ctx, func(tx *stm.Tx) error {
			n, _ := counter.Get(tx, 0)
			whilecommit.Do(tx, func() { say("hook %d", n) })
			return nil
		})
		if err != nil {
			fail(err)
		}
	}
}

// TestReadersNeverSeeLostValues kills a process whose readers print the
// durable counter they read (after Run returned, or from a hook) with
// SIGKILL, and checks after each restart that the counter on disk is at
// least every value printed: no transaction acted on a value that the crash
// then lost. Before the durable watermark, readers saw values published
// before their fsync, and lost ones showed up within a few dozen kills.
func TestReadersNeverSeeLostValues(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: spawns and kills 30 processes")
	}
	dir := t.TempDir()
	s := rand.Uint64()
	t.Logf("seed %d", s)
	r := rand.New(rand.NewPCG(s, 0))
	rounds := 30
	if os.Getenv("ZEST_STRESS") != "" {
		rounds = 200
	}
	var highest int64
	for round := range rounds {
		killAfter := 1 + r.IntN(400)
		seen := 0
		var printed int64
		crashtest.Run(t, []string{readerChildEnv + "=" + dir}, func(line string) bool {
			for _, p := range []string{"read ", "copy ", "hook "} {
				if v, ok := strings.CutPrefix(line, p); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					printed = max(printed, n)
					seen++
				}
			}
			return seen >= killAfter
		})
		db, q, counter := openDurable[int, int64](t, dir, "counter")
		got := snapshot(t, db, counter)[0]
		require.NoError(t, q.Close())
		require.GreaterOrEqual(t, got, printed, "round %d: a reader acted on value %d, the disk holds %d", round, printed, got)
		require.GreaterOrEqual(t, got, highest, "round %d: the counter went back", round)
		highest = got
	}
	t.Logf("%d kills; the counter reached %d", rounds, highest)
}
