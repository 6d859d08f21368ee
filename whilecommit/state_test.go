package whilecommit_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// recorder is a State holding a list of strings; its End appends the
// outcome and the list to log.
type recorder struct {
	name  string
	items []string
	log   *[]string
}

func (r *recorder) Mark() int           { return len(r.items) }
func (r *recorder) RollbackTo(mark int) { r.items = r.items[:mark] }
func (r *recorder) End(committed bool) {
	*r.log = append(*r.log, fmt.Sprintf("%s %v %v", r.name, committed, r.items))
}

func attach(tx *stm.Tx, name string, log *[]string) *recorder {
	return whilecommit.Attach(tx, name, func() whilecommit.State { return &recorder{name: name, log: log} }).(*recorder)
}

// TestStateFollowsSavepoints: a State keeps what its transaction added
// outside rolled-back savepoints, at every level; a State attached inside a
// savepoint that rolls back is emptied and stays attached; States end once,
// in attach order, before the hooks.
func TestStateFollowsSavepoints(t *testing.T) {
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprint(committed), func(t *testing.T) {
			db, _ := stm.Open(nil)
			var log []string
			add := func(tx *stm.Tx, name, item string) {
				r := attach(tx, name, &log)
				r.items = append(r.items, item)
			}
			err := db.Run(context.Background(), func(tx *stm.Tx) error {
				whilecommit.Do(tx, func() { log = append(log, "hook") })
				whilecommit.OnRollback(tx, func() { log = append(log, "rollback hook") })
				add(tx, "a", "a0")
				_ = tx.Savepoint(func(tx *stm.Tx) error { // commits
					add(tx, "a", "a1")
					_ = tx.Savepoint(func(tx *stm.Tx) error { // rolls back
						add(tx, "a", "a2")
						add(tx, "b", "b2")                        // b attached here: emptied
						_ = tx.Savepoint(func(tx *stm.Tx) error { // commits inside
							add(tx, "a", "a3")
							add(tx, "b", "b3")
							return nil
						})
						return errFail
					})
					add(tx, "b", "b4")
					return nil
				})
				_ = tx.Savepoint(func(tx *stm.Tx) error { // rolls back
					add(tx, "a", "a5")
					add(tx, "b", "b5")
					return errFail
				})
				add(tx, "a", "a6")
				if !committed {
					return errFail
				}
				return nil
			})
			want := []string{
				fmt.Sprintf("a %v [a0 a1 a6]", committed),
				fmt.Sprintf("b %v [b4]", committed),
			}
			if committed {
				require.NoError(t, err)
				want = append(want, "hook")
			} else {
				require.ErrorIs(t, err, errFail)
				want = append(want, "rollback hook")
			}
			assert.Equal(t, want, log)
		})
	}
}

// TestStateCreatedInsideSavepoint: the first State and the first hook of a
// transaction both come into being inside a savepoint that rolls back.
func TestStateCreatedInsideSavepoint(t *testing.T) {
	db, _ := stm.Open(nil)
	var log []string
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		_ = tx.Savepoint(func(tx *stm.Tx) error {
			r := attach(tx, "a", &log)
			r.items = append(r.items, "lost")
			whilecommit.Do(tx, func() { log = append(log, "dropped") })
			whilecommit.OnRollback(tx, func() { log = append(log, "orphan") })
			return errFail
		})
		r := attach(tx, "a", &log)
		r.items = append(r.items, "kept")
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"a true [kept]", "orphan"}, log)
}

// TestStateRerunDropped: an attempt that reruns starts without States, and
// the dropped attempts' States never end.
func TestStateRerunDropped(t *testing.T) {
	db, _ := stm.Open(nil)
	v := stm.NewVar(nil, 0)
	var log []string
	created := 0
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		x, _ := v.Load(tx)
		r := whilecommit.Attach(tx, "k", func() whilecommit.State {
			created++
			return &recorder{name: "k", log: &log}
		}).(*recorder)
		assert.Empty(t, r.items, "a new attempt starts with a new State")
		r.items = append(r.items, fmt.Sprint(tx.Attempt()))
		if tx.Attempt() < 3 {
			require.NoError(t, testutil.Elsewhere(func() error {
				return db.Run(context.Background(), func(tx *stm.Tx) error { v.Store(tx, x+1); return nil })
			}))
		}
		v.Store(tx, x+10)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 3, created)
	assert.Equal(t, []string{"k true [3]"}, log)
}

type panicky struct{}

func (panicky) Mark() int           { return 0 }
func (panicky) RollbackTo(int)      {}
func (panicky) End(bool)            { panic("state exploded") }
func newPanicky() whilecommit.State { return panicky{} }

// TestStatePanics: a State whose End panics is recovered, logged and
// counted; the other States and the hooks still run and the commit stands.
func TestStatePanics(t *testing.T) {
	var buf bytes.Buffer
	db, _ := stm.Open(&stm.Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	var log []string
	err := db.Run(context.Background(), func(tx *stm.Tx) error {
		whilecommit.Attach(tx, "p", newPanicky)
		attach(tx, "a", &log).items = []string{"x"}
		whilecommit.Do(tx, func() { log = append(log, "hook") })
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"a true [x]", "hook"}, log)
	assert.Equal(t, whilecommit.Stats{Ran: 3, Panicked: 1}, whilecommit.StatsOf(db))
	assert.Contains(t, buf.String(), "state exploded")
}

// TestRecycledHooksStartEmpty: the per-transaction record is pooled; a
// transaction never sees another's hooks or States, whether the earlier one
// grew past the inline arrays, rolled back savepoints or rolled back.
func TestRecycledHooksStartEmpty(t *testing.T) {
	db, _ := stm.Open(nil)
	ctx := context.Background()
	var log []string
	for round := range 50 {
		n := round % 7 * 3 // 0 to 18 hooks: within and past the inline array
		err := db.Run(ctx, func(tx *stm.Tx) error {
			for i := range n {
				whilecommit.Do(tx, func() { log = append(log, fmt.Sprint(round, i)) })
				attach(tx, fmt.Sprint("s", i%3), &log)
			}
			_ = tx.Savepoint(func(tx *stm.Tx) error {
				whilecommit.OnRollback(tx, func() { log = append(log, fmt.Sprint(round, "orphan")) })
				return errFail
			})
			if round%5 == 4 {
				return errFail
			}
			return nil
		})
		var want []string
		states := min(n, 3)
		for i := range states {
			want = append(want, fmt.Sprintf("s%d %v []", i, round%5 != 4))
		}
		if round%5 != 4 {
			for i := range n {
				want = append(want, fmt.Sprint(round, i))
			}
		}
		want = append(want, fmt.Sprint(round, "orphan"))
		if round%5 == 4 {
			require.ErrorIs(t, err, errFail)
		} else {
			require.NoError(t, err)
		}
		require.Equal(t, want, log, "round %d", round)
		log = log[:0]
	}
}

var sink int

func count() { sink++ }

// nop is a State that does nothing: one value serves every transaction.
type nop struct{}

func (*nop) Mark() int      { return 0 }
func (*nop) RollbackTo(int) {}
func (*nop) End(bool)       {}

var theNop nop

func newNop() whilecommit.State { return &theNop }

type stateKey struct{}

// TestRegistrationAllocatesNothing: once the pool is warm, registering a
// few hooks (plain functions) and attaching a State cost no allocation.
func TestRegistrationAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	db, _ := stm.Open(nil)
	v := stm.NewVar(nil, 0)
	ctx := context.Background()
	body := func(hooks bool) func(tx *stm.Tx) error {
		return func(tx *stm.Tx) error {
			x, _ := v.Load(tx)
			v.Store(tx, x+1)
			if hooks {
				whilecommit.Do(tx, count)
				whilecommit.OnRollback(tx, count)
				whilecommit.Do(tx, count)
				whilecommit.Attach(tx, stateKey{}, newNop)
			}
			return nil
		}
	}
	plainBody, hookBody := body(false), body(true)
	plain := testing.AllocsPerRun(1000, func() { _ = db.Run(ctx, plainBody) })
	with := testing.AllocsPerRun(1000, func() { _ = db.Run(ctx, hookBody) })
	assert.Equal(t, plain, with, "allocations per transaction without and with hooks")
}

func BenchmarkHooks(b *testing.B) {
	db, _ := stm.Open(nil)
	v := stm.NewVar(nil, 0)
	ctx := context.Background()
	for _, n := range []int{0, 1, 3} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			body := func(tx *stm.Tx) error {
				x, _ := v.Load(tx)
				v.Store(tx, x+1)
				for range n {
					whilecommit.Do(tx, count)
				}
				return nil
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = db.Run(ctx, body)
			}
		})
	}
}

// TestStateRandomNesting checks States and hooks against a model over
// random trees of savepoints, some rolling back: a State ends holding
// exactly the items added outside rolled-back savepoints, Do hooks run for
// the same ones, and OnRollback hooks run for the items added inside
// rolled-back savepoints (and for all of them if the transaction rolls
// back). The seed is printed; WHILECOMMIT_SEED replays one, ZEST_STRESS=1
// runs 50 seeds.
func TestStateRandomNesting(t *testing.T) {
	for _, seed := range testutil.Seeds(t, "WHILECOMMIT_SEED") {
		randomNesting(t, seed)
	}
}

func randomNesting(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0))
	db, _ := stm.Open(nil)
	names := []string{"a", "b", "c"}
	for round := range 200 {
		var log []string
		var ran []string
		// The model: items added per name, kept if no enclosing savepoint
		// rolled back; rolled lists items whose savepoint rolled back.
		kept := map[string][]string{}
		var rolled, attachedNames []string
		next := 0
		var level func(tx *stm.Tx, depth int) (added map[string][]string, all []string, err error)
		level = func(tx *stm.Tx, depth int) (map[string][]string, []string, error) {
			added := map[string][]string{}
			var all []string
			for range r.IntN(6) {
				if depth < 4 && r.IntN(3) == 0 {
					sub, subAll, err := func() (map[string][]string, []string, error) {
						var sub map[string][]string
						var subAll []string
						err := tx.Savepoint(func(tx *stm.Tx) error {
							var err error
							sub, subAll, err = level(tx, depth+1)
							return err
						})
						return sub, subAll, err
					}()
					if err != nil {
						rolled = append(rolled, subAll...)
						continue
					}
					for n, items := range sub {
						added[n] = append(added[n], items...)
					}
					all = append(all, subAll...)
					continue
				}
				name := names[r.IntN(len(names))]
				item := fmt.Sprint(next)
				next++
				if !slices.Contains(attachedNames, name) {
					attachedNames = append(attachedNames, name)
				}
				st := attach(tx, name, &log)
				st.items = append(st.items, item)
				whilecommit.Do(tx, func() { ran = append(ran, "do "+item) })
				whilecommit.OnRollback(tx, func() { ran = append(ran, "undo "+item) })
				added[name] = append(added[name], item)
				all = append(all, item)
			}
			if depth > 0 && r.IntN(3) == 0 {
				return nil, all, errFail
			}
			return added, all, nil
		}
		commit := r.IntN(4) != 0
		var top []string
		err := db.Run(context.Background(), func(tx *stm.Tx) error {
			kept, rolled, attachedNames, next = map[string][]string{}, nil, nil, 0
			added, all, _ := level(tx, 0)
			kept, top = added, all
			if !commit {
				return errFail
			}
			return nil
		})
		if commit {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, errFail)
		}
		// Each item registered a Do and an OnRollback hook: exactly one of
		// them runs, once (TestGoldenSequence checks the order).
		want := map[string]bool{}
		for _, it := range rolled {
			want["undo "+it] = true
		}
		for _, it := range top {
			if commit {
				want["do "+it] = true
			} else {
				want["undo "+it] = true
			}
		}
		got := map[string]bool{}
		for _, h := range ran {
			require.False(t, got[h], "seed %d round %d: %s ran twice", seed, round, h)
			got[h] = true
		}
		require.Equal(t, want, got, "seed %d round %d: hooks", seed, round)
		// One End per State attached, in attach order, each holding the
		// items added outside rolled-back savepoints.
		require.Len(t, log, len(attachedNames), "seed %d round %d: States ended", seed, round)
		for i, name := range attachedNames {
			require.Equal(t, fmt.Sprintf("%s %v %v", name, commit, kept[name]), log[i], "seed %d round %d", seed, round)
		}
	}
}
