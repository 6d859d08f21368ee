package stm_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/stm"
)

func open(t *testing.T, o *stm.Options) *stm.DB {
	t.Helper()
	db, err := stm.Open(o)
	require.NoError(t, err)
	return db
}

func load[T any](t *testing.T, db *stm.DB, v *stm.Var[T]) T {
	t.Helper()
	x, err := stm.RunValue(context.Background(), db, func(tx *stm.Tx) (T, error) {
		x, _ := v.Load(tx)
		return x, nil
	})
	require.NoError(t, err)
	return x
}

func TestOptionsInvalid(t *testing.T) {
	_, err := stm.Open(&stm.Options{MaxAttempts: -1, EscalateAfter: -2})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MaxAttempts is -1")
	assert.Contains(t, err.Error(), "EscalateAfter is -2")
}

func TestReadYourWrites(t *testing.T) {
	db := open(t, nil)
	v := stm.NewVar[[3]int](nil, [3]int{1, 2, 3})
	w := stm.NewVar[string](nil, "a")
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		v.Store(tx, [3]int{4, 5, 6})
		got, _ := v.Load(tx)
		assert.Equal(t, [3]int{4, 5, 6}, got)
		w.Clear(tx)
		assert.False(t, w.Present(tx))
		return tx.Savepoint(func(tx *stm.Tx) error {
			w.Store(tx, "b")
			s, ok := w.Load(tx)
			assert.True(t, ok)
			assert.Equal(t, "b", s)
			return nil
		})
	})
	require.NoError(t, err)
	assert.Equal(t, [3]int{4, 5, 6}, load(t, db, v))
	assert.Equal(t, "b", load(t, db, w))
}

func TestErrorRollsBack(t *testing.T) {
	db := open(t, nil)
	v := stm.NewVar(nil, 1)
	boom := errors.New("boom")
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		v.Store(tx, 2)
		return boom
	})
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 1, load(t, db, v))
	assert.Equal(t, uint64(1), db.Stats().Rollbacks)
}

func TestPanicRollsBackAndIsReraised(t *testing.T) {
	db := open(t, nil)
	v := stm.NewVar(nil, 1)
	func() {
		defer func() {
			assert.Equal(t, "kaboom", recover())
		}()
		_ = db.Run(context.Background(), func(tx *stm.Tx) error {
			v.Store(tx, 2)
			panic("kaboom")
		})
	}()
	assert.Equal(t, 1, load(t, db, v))
	assert.Equal(t, uint64(1), db.Stats().Panics)
}

// commitElsewhere changes v in a separate transaction, on another goroutine
// (a Run nested in a body fails with ErrNestedRun), while a body waits, to
// make that body's reads stale at a chosen moment. The body must not run in
// serial mode, which would hold the other commit back.
func commitElsewhere(t *testing.T, db *stm.DB, v *stm.Var[int], x int) {
	done := make(chan error)
	go func() {
		done <- db.Run(context.Background(), func(tx *stm.Tx) error {
			v.Store(tx, x)
			return nil
		})
	}()
	require.NoError(t, <-done)
}

// TestStaleErrorOrPanicReruns: a body that fails, by error or panic, after
// reading a value changed since is rerun; the failure is not reported.
func TestStaleErrorOrPanicReruns(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fail  func() error
		cause stm.Cause
	}{
		{"error", func() error { return errors.New("saw the old value") }, stm.CauseErrorStale},
		{"panic", func() error { panic("saw the old value") }, stm.CausePanicStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t, nil)
			v := stm.NewVar(nil, 0)
			attempts := 0
			err := db.Run(context.Background(), func(tx *stm.Tx) error {
				attempts++
				x, _ := v.Load(tx)
				if attempts == 1 {
					commitElsewhere(t, db, v, 1)
				}
				if x == 0 {
					return tc.fail()
				}
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, 2, attempts)
			assert.Equal(t, uint64(1), db.Stats().RerunsByCause[tc.cause])
		})
	}
}

func TestTxUsedAfterBody(t *testing.T) {
	db := open(t, nil)
	v := stm.NewVar(nil, 0)
	var leaked *stm.Tx
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		leaked = tx
		return nil
	}))
	// Another transaction reuses the pooled state; the stale handle must
	// still be refused.
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error { v.Store(tx, 1); return nil }))
	for name, use := range map[string]func(){
		"Load":  func() { v.Load(leaked) },
		"Store": func() { v.Store(leaked, 2) },
		"Savepoint": func() {
			_ = leaked.Savepoint(func(*stm.Tx) error { return nil })
		},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				err, _ := recover().(error)
				assert.ErrorIs(t, err, stm.ErrTxDone)
			}()
			use()
		})
	}
	assert.Equal(t, 1, load(t, db, v))
}

// conflictEveryTime makes each attempt's read stale before it commits.
func conflictEveryTime(t *testing.T, db *stm.DB, v *stm.Var[int], onAttempt func(int)) error {
	return db.Run(context.Background(), func(tx *stm.Tx) error {
		x, _ := v.Load(tx)
		onAttempt(tx.Attempt())
		commitElsewhere(t, db, v, x+1)
		v.Store(tx, -1)
		return nil
	})
}

func TestRedoLimit(t *testing.T) {
	db := open(t, &stm.Options{MaxAttempts: 5, EscalateAfter: 5})
	v := stm.NewVar(nil, 0)
	attempts := 0
	err := conflictEveryTime(t, db, v, func(int) { attempts++ })
	assert.ErrorIs(t, err, stm.ErrTooManyAttempts)
	assert.Equal(t, 5, attempts)
	assert.Equal(t, 5, load(t, db, v), "only the other transactions' writes landed")
	assert.Equal(t, uint64(1), db.Stats().RedoLimit)
}

func TestContextCanceledMidContention(t *testing.T) {
	db := open(t, &stm.Options{EscalateAfter: 100})
	v := stm.NewVar(nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := db.Run(ctx, func(tx *stm.Tx) error {
		x, _ := v.Load(tx)
		if tx.Attempt() == 4 {
			cancel()
		}
		commitElsewhere(t, db, v, x+1)
		v.Store(tx, -1)
		return nil
	})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 4, load(t, db, v))
	assert.Equal(t, uint64(1), db.Stats().Canceled)
}

func TestClosed(t *testing.T) {
	db := open(t, nil)
	require.NoError(t, db.Close())
	assert.ErrorIs(t, db.Run(context.Background(), func(*stm.Tx) error { return nil }), stm.ErrClosed)
}

func TestRegisterTwice(t *testing.T) {
	db := open(t, nil)
	_, err := db.Register("bags")
	require.NoError(t, err)
	_, err = db.Register("bags")
	assert.ErrorIs(t, err, stm.ErrNameTaken)
}

// TestSavepointNested checks that each level rolls back only its own writes.
func TestSavepointNested(t *testing.T) {
	db := open(t, nil)
	vs := make([]*stm.Var[int], 4)
	for i := range vs {
		vs[i] = stm.NewVar(nil, 0)
	}
	fail := errors.New("fail")
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		vs[0].Store(tx, 1)
		_ = tx.Savepoint(func(tx *stm.Tx) error {
			vs[0].Store(tx, 10) // overwrites an outer write: restored on rollback
			vs[1].Store(tx, 1)
			_ = tx.Savepoint(func(tx *stm.Tx) error {
				vs[2].Store(tx, 1)
				return nil
			})
			return fail
		})
		_ = tx.Savepoint(func(tx *stm.Tx) error {
			vs[3].Store(tx, 1)
			err := tx.Savepoint(func(tx *stm.Tx) error {
				vs[3].Store(tx, 2) // overwrites the enclosing savepoint's write
				return fail
			})
			x, _ := vs[3].Load(tx)
			assert.Equal(t, 1, x)
			assert.ErrorIs(t, err, fail)
			return nil
		})
		x, _ := vs[0].Load(tx)
		assert.Equal(t, 1, x)
		return nil
	}))
	got := []int{load(t, db, vs[0]), load(t, db, vs[1]), load(t, db, vs[2]), load(t, db, vs[3])}
	assert.Equal(t, []int{1, 0, 0, 1}, got)
}

// TestSavepointPanicRollsBackWholeTx: a panic in a savepoint goes through
// the outer body and rolls everything back.
func TestSavepointPanic(t *testing.T) {
	db := open(t, nil)
	v := stm.NewVar(nil, 0)
	func() {
		defer func() { assert.Equal(t, "deep", recover()) }()
		_ = db.Run(context.Background(), func(tx *stm.Tx) error {
			v.Store(tx, 1)
			return tx.Savepoint(func(tx *stm.Tx) error {
				v.Store(tx, 2)
				panic("deep")
			})
		})
	}()
	assert.Equal(t, 0, load(t, db, v))
}

// TestProgressHotRecord: 64 goroutines increment one record. Every
// transaction must commit, none reaching the redo limit.
func TestProgressHotRecord(t *testing.T) {
	const goroutines, each = 64, 200
	db := open(t, nil)
	hot := stm.NewVar(nil, 0)
	var failures atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				err := db.Run(context.Background(), func(tx *stm.Tx) error {
					x, _ := hot.Load(tx)
					hot.Store(tx, x+1)
					return nil
				})
				if err != nil {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	st := db.Stats()
	assert.Zero(t, failures.Load())
	assert.Zero(t, st.RedoLimit)
	assert.Equal(t, goroutines*each, load(t, db, hot))
	t.Logf("commits %d, reruns %d, escalations %d, attempts p50/p99/max %d/%d/%d",
		st.Commits, st.Reruns, st.Escalations, st.AttemptsP50, st.AttemptsP99, st.AttemptsMax)
}

// TestOpacity: writers keep x == y. Bodies that read both, including
// attempts later rerun, must never see them differ. Runs about a second.
func TestOpacity(t *testing.T) {
	db := open(t, nil)
	x, y := stm.NewVar(nil, 0), stm.NewVar(nil, 0)
	var seen, torn atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_ = db.Run(ctx, func(tx *stm.Tx) error {
					a, _ := x.Load(tx)
					x.Store(tx, a+1)
					y.Store(tx, a+1)
					return nil
				})
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_ = db.Run(ctx, func(tx *stm.Tx) error {
					a, _ := x.Load(tx)
					runtimeYield()
					b, _ := y.Load(tx)
					seen.Add(1)
					if a != b {
						torn.Add(1)
					}
					return nil
				})
			}
		})
	}
	waitFor(ctx, cancel, 1e9)
	wg.Wait()
	t.Logf("bodies checked %d, rerun attempts %d", seen.Load(), db.Stats().Reruns)
	assert.Greater(t, seen.Load(), int64(1000))
	assert.Zero(t, torn.Load(), "a body saw x != y")
}

func ExampleStats() {
	db, _ := stm.Open(nil)
	v := stm.NewVar(nil, 1)
	_ = db.Run(context.Background(), func(tx *stm.Tx) error { v.Store(tx, 2); return nil })
	st := db.Stats()
	fmt.Println(st.Commits, st.Reruns, st.AttemptsMax)
	// Output: 1 0 1
}

// TestTxUsedInLaterBody: a handle kept from one body and used inside the
// next ones (same goroutine, so the same pooled state) is refused, however
// many transactions ran in between, up to the ring's blind spot.
func TestTxUsedInLaterBody(t *testing.T) {
	db := open(t, nil)
	v := stm.NewVar(nil, 0)
	var prev *stm.Tx
	for i := range 1000 {
		require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
			if prev != nil {
				func() {
					defer func() {
						err, _ := recover().(error)
						assert.ErrorIs(t, err, stm.ErrTxDone, "run %d", i)
					}()
					v.Store(prev, -1)
				}()
				assert.ErrorIs(t, prev.Err(), stm.ErrTxDone)
			}
			prev = tx
			x, _ := v.Load(tx)
			v.Store(tx, x+1)
			return nil
		}))
	}
	assert.Equal(t, 1000, load(t, db, v))
}

// TestTxUsedFromAnotherGoroutine: a Tx handed to another goroutine while its
// body runs is refused there (on amd64 and arm64, where the goroutine check
// is cheap enough to make on every call).
func TestTxUsedFromAnotherGoroutine(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the goroutine check is made on amd64 and arm64 only")
	}
	db := open(t, nil)
	v := stm.NewVar(nil, 0)
	var got, gotErr error
	require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() { got, _ = recover().(error) }()
			gotErr = tx.Err()
			v.Store(tx, 5)
		}()
		<-done
		return nil
	}))
	assert.ErrorIs(t, got, stm.ErrTxDone)
	assert.ErrorIs(t, gotErr, stm.ErrTxDone)
	assert.Equal(t, 0, load(t, db, v))
}

// TestCommitCountMonotonic: first-attempt commits are counted in the body
// slots and moved out when a slot's count fills; Stats never sees the count
// go down while that happens, and ends exact.
func TestCommitCountMonotonic(t *testing.T) {
	db := open(t, nil)
	v := stm.NewVar(nil, 0)
	const n = 70_000 // more than two moves of one slot's count
	stop := make(chan struct{})
	bad := make(chan string, 1)
	go func() {
		defer close(bad)
		var last uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			c := db.Stats().Commits
			if c < last {
				bad <- fmt.Sprintf("Commits went from %d to %d", last, c)
				return
			}
			last = c
		}
	}()
	ctx := context.Background()
	for range n {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			x, _ := v.Load(tx)
			v.Store(tx, x+1)
			return nil
		}))
	}
	close(stop)
	if msg, ok := <-bad; ok {
		t.Fatal(msg)
	}
	assert.Equal(t, uint64(n), db.Stats().Commits)
	assert.Equal(t, uint64(1), db.Stats().AttemptsMax)
}
