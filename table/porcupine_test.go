package table_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// A randomized history checker. Goroutines run random transactions over a
// few keys (Get, Put, Delete, Len, Scan, read-modify-write, and a Put only
// while Len is below a bound, after writes of their own); every committed
// transaction's call time, return time, input and output are recorded, and
// porcupine checks the history for linearizability of whole transactions
// against a sequential model: strict serializability.
//
// Replay a failure with ZEST_SEED=<seed printed by the test>.

const histKeys = 4

type opKind uint8

const (
	opGet opKind = iota
	opPut
	opDelete
	opLen
	opScan
	opIncr     // read-modify-write: Put(k, Get(k)+1)
	opPutIfFew // Put(k, v) only if Len < 3
	numOpKinds
)

type histOp struct {
	kind opKind
	key  int
	val  int
}

// histState is the table as the model sees it: 0 means absent.
type histState [histKeys]int

// apply runs ops on s and returns the outputs a serial execution gives.
func apply(s histState, ops []histOp) (histState, []int) {
	out := make([]int, 0, len(ops))
	count := func() int {
		n := 0
		for _, v := range s {
			if v != 0 {
				n++
			}
		}
		return n
	}
	for _, o := range ops {
		switch o.kind {
		case opGet:
			out = append(out, s[o.key])
		case opPut:
			s[o.key] = o.val
			out = append(out, 0)
		case opDelete:
			found := 0
			if s[o.key] != 0 {
				found = 1
			}
			s[o.key] = 0
			out = append(out, found)
		case opLen:
			out = append(out, count())
		case opScan:
			sum := 0
			for k, v := range s {
				sum += v * (k + 1) * 1000
			}
			out = append(out, sum)
		case opIncr:
			s[o.key]++
			out = append(out, s[o.key])
		case opPutIfFew:
			if count() < 3 {
				s[o.key] = o.val
				out = append(out, 1)
			} else {
				out = append(out, 0)
			}
		}
	}
	return s, out
}

// run runs ops in tx against tb and returns their outputs.
func run(tx *stm.Tx, tb *table.Table[int, int], ops []histOp) []int {
	out := make([]int, 0, len(ops))
	for _, o := range ops {
		switch o.kind {
		case opGet:
			v, _ := tb.Get(tx, o.key)
			out = append(out, v)
		case opPut:
			tb.Put(tx, o.key, o.val)
			out = append(out, 0)
		case opDelete:
			found := 0
			if tb.Delete(tx, o.key) {
				found = 1
			}
			out = append(out, found)
		case opLen:
			out = append(out, tb.Len(tx))
		case opScan:
			sum := 0
			tb.Scan(tx, func(k, v int) bool { sum += v * (k + 1) * 1000; return true })
			out = append(out, sum)
		case opIncr:
			v, _ := tb.Get(tx, o.key)
			tb.Put(tx, o.key, v+1)
			out = append(out, v+1)
		case opPutIfFew:
			if tb.Len(tx) < 3 {
				tb.Put(tx, o.key, o.val)
				out = append(out, 1)
			} else {
				out = append(out, 0)
			}
		}
	}
	return out
}

var txModel = porcupine.Model{
	Init: func() any { return histState{} },
	Step: func(state, input, output any) (bool, any) {
		next, want := apply(state.(histState), input.([]histOp))
		got := output.([]int)
		if len(got) != len(want) {
			return false, state
		}
		for i := range got {
			if got[i] != want[i] {
				return false, state
			}
		}
		return true, next
	},
	DescribeOperation: func(input, output any) string { return fmt.Sprintf("%v -> %v", input, output) },
}

func TestStrictSerializabilityChecker(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ZEST_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("seed %d (replay with ZEST_SEED=%d)", seed, seed)
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	for round := range rounds {
		checkRound(t, seed+uint64(round), round)
		if t.Failed() {
			return
		}
	}
}

func checkRound(t *testing.T, seed uint64, round int) {
	const goroutines, perG = 4, 60
	db, err := stm.Open(&stm.Options{EscalateAfter: 4})
	require.NoError(t, err)
	tb, err := table.New[int, int](db, "hist")
	require.NoError(t, err)
	start := time.Now()
	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	errs := make([]error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for range perG {
				ops := make([]histOp, 1+r.IntN(4))
				for i := range ops {
					ops[i] = histOp{kind: opKind(r.IntN(int(numOpKinds))), key: r.IntN(histKeys), val: 1 + r.IntN(9)}
				}
				rollback := r.IntN(10) == 0
				var out []int
				call := time.Since(start).Nanoseconds()
				err := db.Run(context.Background(), func(tx *stm.Tx) error {
					out = run(tx, tb, ops)
					if rollback {
						return errRollback
					}
					return nil
				})
				ret := time.Since(start).Nanoseconds()
				if rollback {
					if err != errRollback {
						errs[g] = fmt.Errorf("rollback returned %v", err)
						return
					}
					continue
				}
				if err != nil {
					errs[g] = err
					return
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: g, Input: ops, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	res := porcupine.CheckOperationsTimeout(txModel, history, 30*time.Second)
	if res != porcupine.Ok {
		t.Errorf("round %d (seed %d): history of %d transactions is not strictly serializable (%v)", round, seed, len(history), res)
	}
}

var errRollback = fmt.Errorf("rollback")
