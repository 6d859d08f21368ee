package stm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/internal/testutil"
)

// Regression tests for the corners of issue 10: liveness (nested Run, hooks
// and waits under the serial gate, contexts in serial waits, panics in the
// commit path) and the durable watermark. Each failed (hung, or reported the
// wrong outcome) on the engine before the fix.

// deadline bounds a test that used to hang: it fails instead of hanging.
func deadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// hookLocal is a Local whose End calls fn: a whilecommit-style hook.
type hookLocal struct{ fn func(committed bool) }

func (hookLocal) Mark() int            { return 0 }
func (hookLocal) RollbackTo(int)       {}
func (h hookLocal) End(committed bool) { h.fn(committed) }

func onEnd(tx *Tx, key any, fn func(committed bool)) {
	tx.local(key, func() seam.Local { return hookLocal{fn} })
}

// escalate makes each attempt of a body stale until it runs in serial mode:
// call it at the top of the body, after a read of v.
func escalate(t *testing.T, tx *Tx, db *DB, v *Var[int]) {
	if tx.live().serial {
		return
	}
	x, _ := v.Load(tx)
	require.NoError(t, testutil.Elsewhere(func() error {
		return db.Run(context.Background(), func(tx *Tx) error { v.Store(tx, x+1); return nil })
	}))
	v.Store(tx, x) // a write, so that the commit validates the stale read
}

func TestNestedRunFailsAtOnce(t *testing.T) {
	ctx := deadline(t)
	for _, serial := range []bool{false, true} {
		t.Run(fmt.Sprintf("serial=%v", serial), func(t *testing.T) {
			db, _ := Open(&Options{EscalateAfter: 2})
			v := NewVar(nil, 0)
			var nested, inSavepoint error
			err := db.Run(ctx, func(tx *Tx) error {
				if serial {
					escalate(t, tx, db, v)
				}
				nested = db.Run(ctx, func(tx *Tx) error { v.Store(tx, 100); return nil })
				inSavepoint = tx.Savepoint(func(tx *Tx) error {
					return db.Run(ctx, func(tx *Tx) error { v.Store(tx, 100); return nil })
				})
				return nil
			})
			require.NoError(t, err)
			assert.ErrorIs(t, nested, ErrNestedRun)
			assert.ErrorIs(t, inSavepoint, ErrNestedRun)
			assert.NotEqual(t, 100, loadV(t, db, v), "the nested transaction must not commit")
			if serial {
				assert.Equal(t, uint64(1), db.Stats().Escalations)
			}
		})
	}
	t.Run("other DB", func(t *testing.T) {
		db, _ := Open(nil)
		other, _ := Open(nil)
		v := NewVar(nil, 0)
		require.NoError(t, db.Run(ctx, func(tx *Tx) error {
			return other.Run(ctx, func(tx *Tx) error { v.Store(tx, 1); return nil })
		}), "a Run of another DB is a different engine: allowed")
	})
	t.Run("after the body, on the same goroutine", func(t *testing.T) {
		db, _ := Open(nil)
		v := NewVar(nil, 0)
		require.NoError(t, db.Run(ctx, func(tx *Tx) error { v.Store(tx, 1); return nil }))
		require.NoError(t, db.Run(ctx, func(tx *Tx) error { v.Store(tx, 2); return nil }))
		assert.Equal(t, 2, loadV(t, db, v))
	})
}

func loadV[T any](t *testing.T, db *DB, v *Var[T]) T {
	t.Helper()
	x, err := RunValue(context.Background(), db, func(tx *Tx) (T, error) { x, _ := v.Load(tx); return x, nil })
	require.NoError(t, err)
	return x
}

// TestHooksRunAfterSerialGate: a transaction that escalated to serial mode
// runs its hooks after the gate opens, so a hook may commit another
// transaction (which would wait for the gate forever before the fix).
func TestHooksRunAfterSerialGate(t *testing.T) {
	ctx := deadline(t)
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			db, _ := Open(&Options{EscalateAfter: 2})
			v, w := NewVar(nil, 0), NewVar(nil, 0)
			var hookErr error
			hookRan := false
			err := db.Run(ctx, func(tx *Tx) error {
				escalate(t, tx, db, v)
				onEnd(tx, "hook", func(committed bool) {
					hookRan = true
					hookErr = db.Run(ctx, func(tx *Tx) error { w.Store(tx, 7); return nil })
				})
				v.Store(tx, -1)
				if !commit {
					return errors.New("roll back")
				}
				return nil
			})
			if commit {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
			require.True(t, hookRan)
			require.NoError(t, hookErr)
			assert.Equal(t, 7, loadV(t, db, w))
			assert.Equal(t, uint64(1), db.Stats().Escalations)
		})
	}
}

// blockingLog is a Log whose writes wait until released, and whose Stage
// (through blockingStage) can block while the commit holds its locks.
type blockingLog struct {
	db      *DB
	panicAt string        // "Append": Append panics
	release chan struct{} // close to let every write through
	fail    error
	mu      sync.Mutex
	next    uint64
}

type blockingWaiter struct {
	l *blockingLog
	v uint64
}

func (w blockingWaiter) Wait() error {
	<-w.l.release
	if w.l.fail != nil {
		w.l.db.stop(w.l.fail)
		return w.l.fail
	}
	w.l.db.dur.durable(w.v)
	return nil
}

func (l *blockingLog) Append(c *seam.Commit) (seam.Waiter, error) {
	if l.panicAt == "Append" {
		panic("boom in Append")
	}
	return blockingWaiter{l, c.Version}, nil
}

// stageHook is a Participant whose Stage calls fn.
type stageHook struct {
	pending func() bool
	stage   func()
}

func (stageHook) Mark() int       { return 0 }
func (stageHook) RollbackTo(int)  {}
func (stageHook) End(bool)        {}
func (s stageHook) Pending() bool { return s.pending == nil || s.pending() }
func (s stageHook) Stage(*seam.Commit) {
	if s.stage != nil {
		s.stage()
	}
}
func (stageHook) Unstage(*seam.Commit) {}

func durableWrite(tx *Tx, sh stageHook) { tx.local("durable", func() seam.Local { return sh }) }

// TestSerialWaitHonoursContext: a transaction in serial mode waiting for a
// record locked by a commit that does not finish ends with its context.
func TestSerialWaitHonoursContext(t *testing.T) {
	db, _ := Open(&Options{EscalateAfter: 1})
	l := &blockingLog{db: db, release: make(chan struct{})}
	require.NoError(t, db.attachLog(l))
	x := NewVar(nil, 0)
	staged := make(chan struct{})
	unblock := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.Run(context.Background(), func(tx *Tx) error {
			x.Store(tx, 1)
			durableWrite(tx, stageHook{stage: func() { close(staged); <-unblock }})
			return nil
		})
	}()
	<-staged // x stays locked until unblock
	ctx, cancel := context.WithCancel(context.Background())
	attempts := 0
	errc := make(chan error, 1)
	go func() {
		errc <- db.Run(ctx, func(tx *Tx) error {
			attempts++
			if attempts == 2 {
				cancel() // the transaction now waits in serial mode
			}
			x.Load(tx)
			return nil
		})
	}()
	err := <-errc
	assert.ErrorIs(t, err, context.Canceled)
	close(unblock)
	close(l.release)
	require.NoError(t, <-done)
	// The gate is open again: a new update commits.
	require.NoError(t, db.Run(deadline(t), func(tx *Tx) error { x.Store(tx, 2); return nil }))
}

// TestCommitPathPanic: a panic in a participant's Pending or Stage releases
// the locks, the sequencer and the serial gate, reaches the caller as the
// panic it was (not as a stale-read rerun), and leaves the DB usable.
func TestCommitPathPanic(t *testing.T) {
	for _, where := range []string{"Pending", "Stage", "Append"} {
		for _, serial := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/serial=%v", where, serial), func(t *testing.T) {
				ctx := deadline(t)
				db, _ := Open(&Options{EscalateAfter: 2})
				l := &blockingLog{db: db, release: make(chan struct{})}
				close(l.release)
				require.NoError(t, db.attachLog(l))
				x, v := NewVar(nil, 0), NewVar(nil, 0)
				sh := stageHook{}
				boom := fmt.Sprintf("boom in %s", where)
				switch where {
				case "Pending":
					sh.pending = func() bool { panic(boom) }
				case "Stage":
					sh.stage = func() { panic(boom) }
				case "Append":
					l.panicAt = "Append"
				}
				attempts := 0
				func() {
					defer func() { assert.Equal(t, boom, recover()) }()
					_ = db.Run(ctx, func(tx *Tx) error {
						attempts++
						if serial {
							escalate(t, tx, db, v)
						}
						x.Load(tx)
						x.Store(tx, 5)
						durableWrite(tx, sh)
						return nil
					})
				}()
				if serial {
					assert.Equal(t, 3, attempts, "two stale attempts, then the panic in serial mode: not rerun")
				} else {
					assert.Equal(t, 1, attempts, "a commit-path panic is not a stale read")
				}
				assert.Equal(t, 0, loadV(t, db, x), "nothing published")
				// Locks, sequencer and gate are free: durable and in-memory
				// commits on the same record go through.
				l.panicAt = ""
				require.NoError(t, db.Run(ctx, func(tx *Tx) error {
					x.Store(tx, 6)
					durableWrite(tx, stageHook{})
					return nil
				}))
				require.NoError(t, db.Run(ctx, func(tx *Tx) error { x.Store(tx, 7); return nil }))
				assert.Equal(t, 7, loadV(t, db, x))
				assert.NoError(t, db.Err())
			})
		}
	}
}

// TestReadersWaitForDurable: a transaction that read a value whose durable
// commit is not on disk yet does not return, and its hooks do not run,
// until it is; a reader of older values does not wait.
func TestReadersWaitForDurable(t *testing.T) {
	for _, kind := range []string{"read-only", "in-memory update", "rollback"} {
		t.Run(kind, func(t *testing.T) {
			ctx := deadline(t)
			db, _ := Open(nil)
			l := &blockingLog{db: db, release: make(chan struct{})}
			require.NoError(t, db.attachLog(l))
			x, y := NewVar(nil, 0), NewVar(nil, 0)
			old := NewVar(nil, 41)
			writer := make(chan error, 1)
			go func() {
				writer <- db.Run(context.Background(), func(tx *Tx) error {
					x.Store(tx, 1)
					durableWrite(tx, stageHook{})
					return nil
				})
			}()
			// Wait until the write is published (it is not durable yet).
			for loadPublished(x) != 1 {
				runtime.Gosched()
			}
			// A reader of old values only goes on at once.
			assert.Equal(t, 41, loadV(t, db, old))

			var released atomic.Bool
			var sawBeforeRelease atomic.Bool
			read := make(chan struct{})
			reader := make(chan error, 1)
			go func() {
				reader <- db.Run(ctx, func(tx *Tx) error {
					v, _ := x.Load(tx)
					onEnd(tx, "hook", func(bool) {
						if !released.Load() {
							sawBeforeRelease.Store(true)
						}
					})
					if tx.Attempt() == 1 {
						close(read)
					}
					switch kind {
					case "in-memory update":
						y.Store(tx, v)
					case "rollback":
						return errors.New("decided on x")
					}
					return nil
				})
				if !released.Load() {
					sawBeforeRelease.Store(true)
				}
			}()
			<-read
			select {
			case err := <-reader:
				t.Fatalf("the reader returned (%v) before the value it read was durable", err)
			default:
			}
			released.Store(true)
			close(l.release)
			require.NoError(t, <-writer)
			err := <-reader
			if kind == "rollback" {
				assert.EqualError(t, err, "decided on x")
			} else {
				assert.NoError(t, err)
			}
			assert.False(t, sawBeforeRelease.Load(), "returned or ran a hook before the value it read was durable")
		})
	}
}

// loadPublished reads x's published value outside any transaction.
func loadPublished(x *Var[int]) int {
	if x.c.meta.Load()&lockedBit != 0 {
		return -1
	}
	return int(x.c.word.Load())
}

// TestReaderOfLostValueFails: when the write of a value a transaction read
// fails, the reader does not return success: it gets ErrStopped.
func TestReaderOfLostValueFails(t *testing.T) {
	ctx := deadline(t)
	db, _ := Open(nil)
	l := &blockingLog{db: db, release: make(chan struct{}), fail: errors.New("disk on fire")}
	require.NoError(t, db.attachLog(l))
	x := NewVar(nil, 0)
	writer := make(chan error, 1)
	go func() {
		writer <- db.Run(context.Background(), func(tx *Tx) error {
			x.Store(tx, 1)
			durableWrite(tx, stageHook{})
			return nil
		})
	}()
	for loadPublished(x) != 1 {
		runtime.Gosched()
	}
	read := make(chan struct{})
	reader := make(chan error, 1)
	go func() {
		reader <- db.Run(ctx, func(tx *Tx) error {
			x.Load(tx)
			if tx.Attempt() == 1 {
				close(read)
			}
			return nil
		})
	}()
	<-read
	close(l.release)
	assert.ErrorIs(t, <-writer, ErrOutcomeUnknown)
	assert.ErrorIs(t, <-reader, ErrStopped)
}

func TestOptionsEscalateAfterMaxAttempts(t *testing.T) {
	_, err := Open(&Options{MaxAttempts: 5, EscalateAfter: 10})
	require.Error(t, err)
	assert.ErrorContains(t, err, "EscalateAfter is 10, more than MaxAttempts (5)")
	o, err := Open(&Options{MaxAttempts: 5})
	require.NoError(t, err, "the default EscalateAfter follows a small MaxAttempts")
	assert.Equal(t, 5, o.Options().EscalateAfter)
}

// TestRunFromHookKeepsSlotRules: a hook may start a transaction on its own
// goroutine (the goroutine's place is marked as running hooks), while a Run
// inside that transaction's body, or inside the first body, is still
// nested; the same holds for a goroutine whose place keeps no transaction
// state (past the first lendPlaces places), whose Runs use the pool.
func TestRunFromHookKeepsSlotRules(t *testing.T) {
	ctx := deadline(t)
	for _, keeps := range []bool{true, false} {
		t.Run(fmt.Sprintf("place-keeps-state=%v", keeps), func(t *testing.T) {
			db, _ := Open(nil)
			v := NewVar(nil, 0)
			if !keeps && fastG { // (elsewhere no place keeps a state)
				require.NoError(t, db.Run(ctx, func(*Tx) error { return nil }))
				p := db.bodies.find(getg())
				require.NotNil(t, p)
				p.lends, p.t = false, nil
			}
			var fromHook, nestedInHookRun, nestedInBody error
			require.NoError(t, db.Run(ctx, func(tx *Tx) error {
				nestedInBody = db.Run(ctx, func(*Tx) error { return nil })
				v.Store(tx, 1)
				onEnd(tx, "hook", func(committed bool) {
					fromHook = db.Run(ctx, func(tx *Tx) error {
						nestedInHookRun = db.Run(ctx, func(*Tx) error { return nil })
						x, _ := v.Load(tx)
						v.Store(tx, x+1)
						return nil
					})
				})
				return nil
			}))
			assert.ErrorIs(t, nestedInBody, ErrNestedRun)
			assert.NoError(t, fromHook)
			assert.ErrorIs(t, nestedInHookRun, ErrNestedRun)
			x, err := RunValue(ctx, db, func(tx *Tx) (int, error) { x, _ := v.Load(tx); return x, nil })
			require.NoError(t, err)
			assert.Equal(t, 2, x)
		})
	}
}

// TestGoexitInBody: a body that ends its goroutine (runtime.Goexit, as
// t.FailNow does when a test calls require inside a body) commits nothing,
// and leaves the DB as it found it: the goroutine's slot and the serial gate
// are released, so later Runs, nested-Run detection and serial mode work.
func TestGoexitInBody(t *testing.T) {
	db, err := Open(&Options{EscalateAfter: 1})
	require.NoError(t, err)
	x := NewVar[int](nil, 0)
	for _, serial := range []bool{false, true} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = db.Run(context.Background(), func(tx *Tx) error {
				if serial && tx.Attempt() == 1 {
					// A second attempt runs in serial mode (EscalateAfter 1).
					panic(&conflict{cause: CauseStale})
				}
				x.Store(tx, 1)
				runtime.Goexit()
				return nil
			})
		}()
		<-done
		err := db.Run(deadline(t), func(tx *Tx) error {
			v, _ := x.Load(tx)
			assert.Equal(t, 0, v, "a body that called Goexit committed")
			return db.Run(context.Background(), func(*Tx) error { return nil })
		})
		require.ErrorIs(t, err, ErrNestedRun, "serial=%v", serial)
		// The serial gate is open: a commit does not wait behind it.
		require.NoError(t, db.Run(deadline(t), func(tx *Tx) error { x.Store(tx, 2); return nil }))
		require.NoError(t, db.Run(deadline(t), func(tx *Tx) error { x.Store(tx, 0); return nil }))
	}
}

// TestPlacesGrow: a thousand goroutines in bodies at once each get a place
// of their own (the table grows under them, past the places that keep a
// transaction state), each sees its own nested Run refused, and every
// commit is counted.
func TestPlacesGrow(t *testing.T) {
	db, _ := Open(nil)
	ctx := deadline(t)
	const n = 1000
	v := NewVar(nil, 0)
	var inside sync.WaitGroup
	inside.Add(n)
	release := make(chan struct{})
	errs := make(chan error, 2*n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			first := true
			errs <- db.Run(ctx, func(tx *Tx) error {
				if first {
					first = false
					inside.Done()
					<-release
				}
				if err := db.Run(ctx, func(*Tx) error { return nil }); !errors.Is(err, ErrNestedRun) {
					return fmt.Errorf("nested Run: %v, want ErrNestedRun", err)
				}
				x, _ := v.Load(tx)
				v.Store(tx, x+1)
				return nil
			})
		})
	}
	inside.Wait()
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	x, err := RunValue(ctx, db, func(tx *Tx) (int, error) { x, _ := v.Load(tx); return x, nil })
	require.NoError(t, err)
	assert.Equal(t, n, x)
	assert.EqualValues(t, n+1, db.Stats().Commits)
	if fastG {
		places := 0
		tab := db.bodies.tab.Load()
		for i := range tab.places {
			if tab.places[i].Load() != nil {
				places++
			}
		}
		assert.GreaterOrEqual(t, places, n, "places")
	}
}

// TestPlacesStayFewWithShortLivedGoroutines: ten thousand goroutines that
// each run one transaction and end, a few at a time, leave as many places as
// ran at once, not one each (the runtime reuses their descriptors, and a
// goroutine inherits the place of the one that ended), and no goroutine
// inherits a state that makes its Run look nested.
func TestPlacesStayFewWithShortLivedGoroutines(t *testing.T) {
	if !fastG {
		t.Skip("places are kept only while their goroutine runs where getg is a goroutine id")
	}
	db, _ := Open(nil)
	ctx := deadline(t)
	const total, atOnce = 10000, 8
	errs := make(chan error, total)
	sem := make(chan struct{}, atOnce)
	var wg sync.WaitGroup
	for range total {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs <- db.Run(ctx, func(tx *Tx) error {
				if err := db.Run(ctx, func(*Tx) error { return nil }); !errors.Is(err, ErrNestedRun) {
					return fmt.Errorf("nested Run: %v, want ErrNestedRun", err)
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	db.bodies.mu.Lock()
	places := db.bodies.mu.n
	db.bodies.mu.Unlock()
	t.Logf("%d places after %d goroutines, %d at a time", places, total, atOnce)
	// The runtime keeps up to 64 spare descriptors per P and a batch in a
	// global list; allow for them (without reuse there would be 10,000).
	assert.LessOrEqual(t, places, 64*runtime.GOMAXPROCS(0)+32+4*atOnce,
		"places after %d short-lived goroutines, %d at a time", total, atOnce)
	assert.EqualValues(t, total, db.Stats().Commits)
}

// TestPlacesRandomNesting: goroutines run random trees of transactions —
// bodies that return, fail or panic, try a nested Run, and register hooks
// that start transactions of their own, down to three levels — and check
// that a Run inside a body is always refused, a Run from a hook never is,
// and the goroutine's place is idle again however the tree ended.
// PLACES_SEED replays a run.
func TestPlacesRandomNesting(t *testing.T) {
	for _, seed := range testutil.Seeds(t, "PLACES_SEED") {
		db, _ := Open(nil)
		ctx := deadline(t)
		v := NewVar(nil, 0)
		errs := make(chan error, 64)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(seed, uint64(w)))
				report := func(format string, args ...any) {
					select {
					case errs <- fmt.Errorf("seed %d goroutine %d: "+format, append([]any{seed, w}, args...)...):
					default:
					}
				}
				var tree func(depth int) error
				tree = func(depth int) (err error) {
					// The hooks of the attempt that ended must each run
					// once: a Run that took its goroutine's busy state
					// would clear or rerun them.
					var registered []int
					ran := map[int]int{}
					defer func() {
						if r := recover(); r != nil {
							err = fmt.Errorf("panicked: %v", r)
						}
						for _, id := range registered {
							if ran[id] != 1 {
								report("depth %d: hook %d ran %d times", depth, id, ran[id])
							}
						}
						if len(ran) > len(registered) {
							report("depth %d: %d hooks ran, %d registered", depth, len(ran), len(registered))
						}
					}()
					return db.Run(ctx, func(tx *Tx) error {
						registered = registered[:0]
						x, _ := v.Load(tx)
						v.Store(tx, x+1)
						for range rng.IntN(4) {
							switch rng.IntN(3) {
							case 0:
								if err := db.Run(ctx, func(*Tx) error { return nil }); !errors.Is(err, ErrNestedRun) {
									report("depth %d: nested Run returned %v", depth, err)
								}
							case 1:
								if depth < 3 {
									id := len(registered)
									registered = append(registered, id)
									onEnd(tx, id, func(bool) {
										ran[id]++
										if err := tree(depth + 1); errors.Is(err, ErrNestedRun) {
											report("depth %d: a hook's Run was refused as nested", depth)
										}
									})
								}
							}
						}
						switch rng.IntN(4) {
						case 0:
							return errors.New("fails")
						case 1:
							panic("body panics")
						}
						return nil
					})
				}
				for range 200 {
					_ = tree(0)
					if fastG {
						if p := db.bodies.find(getg()); p == nil || p.w.Load()&(inBody|inHooks) != 0 {
							report("place not idle after a tree: %v", p)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// TestLocalEndPanicsOrExits: a Local whose End (a hook) panics, or ends its
// goroutine, after a commit or a rollback: the panic reaches Run's caller,
// and either way the goroutine's place is idle again, the Tx is dead, the
// serial gate is open and the DB goes on working.
func TestLocalEndPanicsOrExits(t *testing.T) {
	db, err := Open(&Options{EscalateAfter: 1})
	require.NoError(t, err)
	ctx := deadline(t)
	v := NewVar(nil, 0)
	for _, exit := range []bool{false, true} {
		for _, fail := range []bool{false, true} {
			for _, serial := range []bool{false, true} {
				name := fmt.Sprintf("goexit=%v/body-fails=%v/serial=%v", exit, fail, serial)
				var kept *Tx
				var recovered any
				placeIdle := true
				done := make(chan struct{})
				go func() {
					defer close(done)
					defer func() {
						recovered = recover()
						// Deferred calls run on Goexit too.
						if p := db.bodies.find(getg()); p != nil && p.w.Load()&(inBody|inHooks) != 0 {
							placeIdle = false
						}
					}()
					_ = db.Run(ctx, func(tx *Tx) error {
						kept = tx
						if serial && tx.Attempt() == 1 {
							panic(&conflict{cause: CauseStale})
						}
						x, _ := v.Load(tx)
						v.Store(tx, x+1)
						onEnd(tx, "bad hook", func(bool) {
							if exit {
								runtime.Goexit()
							}
							panic("hook panics")
						})
						if fail {
							return errors.New("fails")
						}
						return nil
					})
				}()
				<-done
				if exit {
					assert.Nil(t, recovered, name)
				} else {
					assert.Equal(t, "hook panics", recovered, name)
				}
				assert.ErrorIs(t, kept.Err(), ErrTxDone, name)
				assert.True(t, placeIdle, "%s: the goroutine's place is still marked in a body or in hooks", name)
				if fastG {
					// The goroutine ended; a fresh one must not look nested.
					require.NoError(t, testutil.Elsewhere(func() error {
						return db.Run(ctx, func(*Tx) error { return nil })
					}), name)
				}
				err := db.Run(ctx, func(tx *Tx) error {
					x, _ := v.Load(tx)
					v.Store(tx, x) // a commit: the serial gate is open
					return db.Run(ctx, func(*Tx) error { return nil })
				})
				require.ErrorIs(t, err, ErrNestedRun, name)
			}
		}
	}
}
