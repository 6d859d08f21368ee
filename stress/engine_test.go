package stress

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
	"github.com/zest-stm/zest/whilecommit"
)

var errInsufficient = errors.New("insufficient funds")

// TestBank checks, while transfers run from many goroutines:
//   - inside read-only bodies, the total of all accounts never changes
//     (opacity: no body sees half a transfer);
//   - no balance goes negative;
//   - at the end, the total is unchanged and equals the initial total.
func TestBank(t *testing.T) {
	s := newScenario(t, "bank")
	defer s.finish()
	const accounts, writers, checkers, initial = 64, 8, 2, 1000
	db, _ := stm.Open(nil)
	tb, _ := table.New[int, int64](db, "accounts")
	ctx := context.Background()
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		for i := range accounts {
			tb.Put(tx, i, initial)
		}
		return nil
	})
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(s.seed, uint64(w)))
			for until(end) {
				from, to, n := r.IntN(accounts), r.IntN(accounts), int64(r.IntN(200))
				err := db.Run(ctx, func(tx *stm.Tx) error {
					a, _ := tb.Get(tx, from)
					b, _ := tb.Get(tx, to)
					if from == to {
						return nil
					}
					if a < n {
						return errInsufficient
					}
					tb.Put(tx, from, a-n)
					tb.Put(tx, to, b+n)
					return nil
				})
				if err != nil && !errors.Is(err, errInsufficient) {
					s.violation("transfer %d->%d: %v", from, to, err)
				}
			}
		})
	}
	for range checkers {
		wg.Go(func() {
			for until(end) {
				_ = db.Run(ctx, func(tx *stm.Tx) error {
					var sum int64
					seen := map[int]int64{}
					tb.Scan(tx, func(k int, v int64) bool {
						sum += v
						seen[k] = v
						if v < 0 {
							s.violation("account %d is negative: %d", k, v)
						}
						return true
					})
					if sum != accounts*initial {
						s.violation("a body saw total %d, want %d (attempt %d)", sum, accounts*initial, tx.Attempt())
						s.logf("balances seen: %v", seen)
					}
					return nil
				})
			}
		})
	}
	wg.Wait()
	var sum int64
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		sum = 0
		tb.Scan(tx, func(_ int, v int64) bool { sum += v; return true })
		return nil
	})
	if sum != accounts*initial {
		s.violation("final total %d, want %d", sum, accounts*initial)
	}
	st := db.Stats()
	s.row.Transactions, s.row.Reruns, s.row.Rollback = st.Commits, st.Reruns, st.Rollbacks
}

// TestHotKeys mixes short transactions (increment one of 4 hot keys) and
// long ones (read the hot keys and 200 cold ones, then increment a hot key)
// from 64 goroutines, and checks:
//   - every transaction commits (none reaches the redo limit);
//   - each hot key ends equal to the number of increments committed on it.
func TestHotKeys(t *testing.T) {
	s := newScenario(t, "hot keys")
	defer s.finish()
	const hot, cold, goroutines = 4, 200, 64
	db, _ := stm.Open(nil)
	tb, _ := table.New[int, int64](db, "keys")
	ctx := context.Background()
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		for i := range hot + cold {
			tb.Put(tx, i, 0)
		}
		return nil
	})
	var incs [hot]atomic.Int64
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(s.seed, uint64(g)))
			for until(end) {
				k, long := r.IntN(hot), r.IntN(4) == 0
				err := db.Run(ctx, func(tx *stm.Tx) error {
					if long {
						var sum int64
						for i := range hot + cold {
							v, _ := tb.Get(tx, i)
							sum += v
						}
						_ = sum
					}
					v, _ := tb.Get(tx, k)
					tb.Put(tx, k, v+1)
					return nil
				})
				if err != nil {
					s.violation("transaction failed: %v", err)
					continue
				}
				incs[k].Add(1)
			}
		})
	}
	wg.Wait()
	_ = db.Run(ctx, func(tx *stm.Tx) error {
		for k := range hot {
			if v, _ := tb.Get(tx, k); v != incs[k].Load() {
				s.violation("hot key %d is %d, %d increments committed", k, v, incs[k].Load())
			}
		}
		return nil
	})
	st := db.Stats()
	if st.RedoLimit > 0 {
		s.violation("%d transactions reached the redo limit", st.RedoLimit)
	}
	s.row.Transactions, s.row.Reruns = st.Commits, st.Reruns
	s.row.Note = fmt.Sprintf("max attempts %d, p99 %d, escalations %d", st.AttemptsMax, st.AttemptsP99, st.Escalations)
	t.Logf("hot keys: %s", s.row.Note)
}

// TestSavepointsAndHooks runs transactions with nested savepoints, some
// failing, some rolling the whole transaction back, with conflicts forcing
// reruns, and checks against what each final attempt decided:
//   - commit hooks ran exactly once per committed transaction, for the
//     savepoints that did not roll back;
//   - rollback hooks ran once: for rolled-back savepoints always, for the
//     rest only if the transaction rolled back;
//   - no hook of a rerun attempt ran.
func TestSavepointsAndHooks(t *testing.T) {
	s := newScenario(t, "savepoints+hooks")
	defer s.finish()
	db, _ := stm.Open(nil)
	hot := stm.NewVar(nil, 0)
	ctx := context.Background()
	errSp := errors.New("savepoint fails")
	errTx := errors.New("transaction rolls back")
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	var ranMu sync.Mutex
	ran := map[string]int{}
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(s.seed, uint64(g)))
			for n := 0; until(end); n++ {
				id := fmt.Sprintf("%d.%d", g, n)
				plan := r.Uint64() // decides the savepoints' fates, the same in every attempt
				rollback := r.IntN(5) == 0
				var want map[string]int
				err := db.Run(ctx, func(tx *stm.Tx) error {
					want = map[string]int{}
					attempt := tx.Attempt()
					hook := func(name string, commit bool, runs bool) {
						key := fmt.Sprintf("%s/%d/%s", id, attempt, name)
						f := func() { ranMu.Lock(); ran[key]++; ranMu.Unlock() }
						if commit {
							whilecommit.Do(tx, f)
						} else {
							whilecommit.OnRollback(tx, f)
						}
						if runs {
							want[key] = 1
						}
					}
					x, _ := hot.Load(tx)
					hot.Store(tx, x+1)
					// Three levels, fates from plan's bits.
					var level func(depth int, path string, outerFails bool) error
					level = func(depth int, path string, outerFails bool) error {
						fails := plan>>(uint(depth)*3+uint(len(path)%3))&1 == 1
						rolledBack := fails || outerFails
						hook(path+"c", true, !rolledBack && !rollback)
						hook(path+"r", false, rolledBack || rollback)
						if depth < 3 {
							_ = tx.Savepoint(func(tx *stm.Tx) error { return level(depth+1, path+"a", rolledBack) })
							_ = tx.Savepoint(func(tx *stm.Tx) error { return level(depth+1, path+"b", rolledBack) })
						}
						if fails {
							return errSp
						}
						return nil
					}
					hook("top-c", true, !rollback)
					hook("top-r", false, rollback)
					_ = tx.Savepoint(func(tx *stm.Tx) error { return level(1, "s", false) })
					if rollback {
						return errTx
					}
					return nil
				})
				if err != nil && !errors.Is(err, errTx) {
					s.violation("tx %s: %v", id, err)
					continue
				}
				ranMu.Lock()
				for k, w := range want {
					if ran[k] != w {
						s.violation("hook %s ran %d times, want %d", k, ran[k], w)
					}
					delete(ran, k)
				}
				// Anything left for this transaction ran but should not have.
				for k, c := range ran {
					if len(k) > len(id) && k[:len(id)+1] == id+"/" {
						s.violation("hook %s ran %d times, want 0", k, c)
						delete(ran, k)
					}
				}
				ranMu.Unlock()
			}
		})
	}
	wg.Wait()
	st := db.Stats()
	s.row.Transactions, s.row.Reruns, s.row.Rollback = st.Commits, st.Reruns, st.Rollbacks
	hs := whilecommit.StatsOf(db)
	s.row.Note = fmt.Sprintf("hooks run %d", hs.Ran)
	if st.Reruns == 0 {
		s.violation("no reruns happened: the scenario did not exercise dropped hooks")
	}
}
