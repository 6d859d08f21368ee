package table_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/internal/stmx"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// openDurable opens a DB with a queue in dir and the durable table name.
func openDurable[K comparable, V any](t testing.TB, dir, name string) (*stm.DB, *effectqueue.Queue, *table.Table[K, V]) {
	t.Helper()
	db, err := stm.Open(nil)
	require.NoError(t, err)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	require.NoError(t, err)
	tb, err := table.NewDurable[K, V](db, name, nil)
	require.NoError(t, err)
	return db, q, tb
}

func snapshot[K comparable, V any](t testing.TB, db *stm.DB, tb *table.Table[K, V]) map[K]V {
	t.Helper()
	m := map[K]V{}
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		clear(m)
		tb.Scan(tx, func(k K, v V) bool { m[k] = v; return true })
		return nil
	}))
	return m
}

func TestDurableRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db, q, tb := openDurable[int64, string](t, dir, "names")
	errNo := errors.New("no")
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		for _, k := range []int64{-5, 3, 0, 1 << 40, -1 << 40} {
			tb.Put(tx, k, "v"+strconv.FormatInt(k, 10))
		}
		tb.Put(tx, 7, "deleted later")
		return nil
	}))
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		tb.Delete(tx, 7)
		tb.Put(tx, 3, "three")
		_ = tx.Savepoint(func(tx *stm.Tx) error {
			tb.Put(tx, 99, "savepoint rolled back")
			return errNo
		})
		return nil
	}))
	require.ErrorIs(t, db.Run(ctx, func(tx *stm.Tx) error {
		tb.Put(tx, 100, "transaction rolled back")
		return errNo
	}), errNo)
	want := snapshot(t, db, tb)
	require.NoError(t, q.Close())

	db, q, tb = openDurable[int64, string](t, dir, "names")
	defer q.Close()
	assert.Equal(t, want, snapshot(t, db, tb))
	assert.Equal(t, 5, tb.Loaded().Records)
	assert.Equal(t, map[int64]string{-1 << 40: "v-1099511627776", -5: "v-5", 0: "v0", 3: "three", 1 << 40: "v1099511627776"}, want)

	// Integer keys are stored in their order, negative ones first.
	var stored [][]byte
	require.NoError(t, stmx.Log(db).(seam.Store).Scan(append(stmx.Log(db).(seam.Store).KeyPrefix(), "zt/names\x00"...), func(k, _ []byte) error {
		stored = append(stored, slices.Clone(k))
		return nil
	}))
	require.Len(t, stored, 5)
	assert.True(t, slices.IsSortedFunc(stored, func(a, b []byte) int { return strings.Compare(string(a), string(b)) }))
}

func TestDurableStringKeysOrdered(t *testing.T) {
	dir := t.TempDir()
	db, q, tb := openDurable[string, int](t, dir, "s")
	keys := []string{"b", "a", "ab", "", "zz", "a\x00"}
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		for i, k := range keys {
			tb.Put(tx, k, i)
		}
		return nil
	}))
	require.NoError(t, q.Close())
	db, q, tb = openDurable[string, int](t, dir, "s")
	defer q.Close()
	got := snapshot(t, db, tb)
	assert.Len(t, got, len(keys))
	for i, k := range keys {
		assert.Equal(t, i, got[k])
	}
}

// TestDurableWithQueueAtomic: a transaction's record writes and its queue
// entries commit together; reruns and rollbacks leave neither.
func TestDurableWithQueueAtomic(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db, q, tb := openDurable[string, int](t, dir, "gold")
	v := stm.NewVar(nil, 0)
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
		x, _ := v.Load(tx)
		tb.Put(tx, "alice", 10+tx.Attempt())
		if tx.Attempt() == 1 {
			require.NoError(t, testutil.Elsewhere(func() error {
				return db.Run(ctx, func(tx *stm.Tx) error { v.Store(tx, x+1); return nil })
			}))
		}
		v.Store(tx, x+10)
		return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("attempt " + strconv.Itoa(tx.Attempt()))})
	}))
	require.NoError(t, q.Close())
	db, q, tb = openDurable[string, int](t, dir, "gold")
	defer q.Close()
	assert.Equal(t, map[string]int{"alice": 12}, snapshot(t, db, tb), "the second attempt's write")
	items, err := q.Read(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, "attempt 2", string(items[0].Payload))
}

type profileV1 struct {
	Name  string
	Level int
	Title string
}

type profileV2 struct { // Title removed, Guild added
	Name  string
	Level int
	Guild string
}

// TestDurableSchemaEvolution: a field added to the value type reads as its
// zero value from old records; a removed field is ignored.
func TestDurableSchemaEvolution(t *testing.T) {
	dir := t.TempDir()
	db, q, tb := openDurable[string, profileV1](t, dir, "profiles")
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		tb.Put(tx, "alice", profileV1{Name: "Alice", Level: 7, Title: "Archmage"})
		return nil
	}))
	require.NoError(t, q.Close())
	db2, q2, tb2 := openDurable[string, profileV2](t, dir, "profiles")
	defer q2.Close()
	assert.Equal(t, map[string]profileV2{"alice": {Name: "Alice", Level: 7}}, snapshot(t, db2, tb2))
}

func TestDurableNeedsStore(t *testing.T) {
	db, _ := stm.Open(nil)
	_, err := table.NewDurable[int, int](db, "x", nil)
	assert.ErrorIs(t, err, table.ErrNoStore)
}

// TestDurableCommitTooLarge: a transaction too large for one atomic write
// fails cleanly, with nothing written, and the DB goes on.
func TestDurableCommitTooLarge(t *testing.T) {
	dir := t.TempDir()
	db, err := stm.Open(nil)
	require.NoError(t, err)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, MemTableSize: 4 << 20, MaxEntrySize: 64 << 10})
	require.NoError(t, err)
	defer q.Close()
	tb, err := table.NewDurable[int, string](db, "big", nil)
	require.NoError(t, err)
	big := strings.Repeat("x", 10_000)
	err = db.Run(context.Background(), func(tx *stm.Tx) error {
		for i := range 1000 {
			tb.Put(tx, i, big)
		}
		return nil
	})
	require.ErrorIs(t, err, stm.ErrCommitTooLarge)
	assert.Empty(t, snapshot(t, db, tb))
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error { tb.Put(tx, 1, "small"); return nil }))
	assert.NoError(t, db.Err())
}

const bankChildEnv = "ZEST_TABLE_BANK_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(bankChildEnv); dir != "" {
		bankChild(dir)
		return
	}
	if dir := os.Getenv(readerChildEnv); dir != "" {
		readerChild(dir)
		return
	}
	os.Exit(m.Run())
}

const (
	bankAccounts = 16
	bankInitial  = 1000
)

// bankChild runs durable transfers that each enqueue a receipt
// "tx from to amount", printing "ack tx" after each acknowledged commit of
// a transfer that moved money.
func bankChild(dir string) {
	db, err := stm.Open(nil)
	if err != nil {
		panic(err)
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	accts, err := table.NewDurable[int, int64](db, "accounts", nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if accts.Loaded().Records == 0 {
		err := db.Run(context.Background(), func(tx *stm.Tx) error {
			for i := range bankAccounts {
				accts.Put(tx, i, bankInitial)
			}
			return nil
		})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	var mu sync.Mutex
	var ids atomic.Uint64
	base := uint64(os.Getpid()) << 32
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), base))
			for {
				id := base | ids.Add(1)
				from, to, amount := r.IntN(bankAccounts), r.IntN(bankAccounts), int64(1+r.IntN(50))
				moved := false
				err := db.Run(context.Background(), func(tx *stm.Tx) error {
					a, _ := accts.Get(tx, from)
					b, _ := accts.Get(tx, to)
					moved = from != to && a >= amount
					if !moved {
						return nil
					}
					accts.Put(tx, from, a-amount)
					accts.Put(tx, to, b+amount)
					return q.Enqueue(tx, effectqueue.Entry{Kind: "receipt",
						Payload: []byte(fmt.Sprintf("%d %d %d %d", id, from, to, amount))})
				})
				if err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
				if moved {
					mu.Lock()
					fmt.Printf("ack %d\n", id)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// TestDurableBankCrash kills a process running durable bank transfers with
// SIGKILL, 20 times, and checks after each restart that:
//   - the total is unchanged;
//   - the balances equal the initial ones with exactly the receipts in the
//     queue applied: records and entries of a transaction are both there or
//     both absent;
//   - every transaction acknowledged before the kill has its receipt.
func TestDurableBankCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: spawns and kills 20 processes")
	}
	dir := t.TempDir()
	s := rand.Uint64()
	t.Logf("seed %d", s)
	r := rand.New(rand.NewPCG(s, 0))
	acked := map[uint64]bool{}
	for round := range 20 {
		killAfter := 1 + r.IntN(60)
		seen := 0
		crashtest.Run(t, []string{bankChildEnv + "=" + dir}, func(line string) bool {
			id, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				return false
			}
			n, _ := strconv.ParseUint(id, 10, 64)
			acked[n] = true
			seen++
			return seen == killAfter
		})
		require.GreaterOrEqual(t, seen, killAfter, "round %d: the child died on its own", round)

		db, q, accts := openDurable[int, int64](t, dir, "accounts")
		balances := snapshot(t, db, accts)
		items, err := q.Read(context.Background(), 0, 1<<30)
		require.NoError(t, err)
		require.NoError(t, q.Close())
		model := map[int]int64{}
		for i := range bankAccounts {
			model[i] = bankInitial
		}
		receipts := map[uint64]bool{}
		for _, it := range items {
			var id uint64
			var from, to int
			var amount int64
			_, err := fmt.Sscanf(string(it.Payload), "%d %d %d %d", &id, &from, &to, &amount)
			require.NoError(t, err)
			receipts[id] = true
			model[from] -= amount
			model[to] += amount
		}
		var total int64
		for _, b := range balances {
			total += b
		}
		require.Equal(t, int64(bankAccounts*bankInitial), total, "round %d: total changed", round)
		require.Equal(t, model, balances, "round %d: balances disagree with the receipts", round)
		for id := range acked {
			require.True(t, receipts[id], "round %d: acknowledged transfer %d lost", round, id)
		}
		t.Logf("round %d: killed after %d acks; %d receipts on disk", round, killAfter, len(items))
	}
}
