package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
)

type order struct{ Qty int }

// TestSagaAndIdemAdapters: real saga runners and idem token tables through
// the adapters. Sagas made of local steps end inside Start's transaction:
// one done, one compensated (its second step fails), one stuck (its undo
// fails too); a token begun twice is replayed once.
func TestSagaAndIdemAdapters(t *testing.T) {
	ctx := context.Background()
	db, q := openQueue(t, &stm.Options{Logger: discardLogger()})
	r, err := saga.New(db, q, &saga.Options{Logger: discardLogger()})
	require.NoError(t, err)
	ok := func(tx *stm.Tx, s *order) error { return nil }
	no := func(tx *stm.Tx, s *order) error { return errors.New("no stock") }
	flows := map[string]*saga.Flow[order]{}
	for name, steps := range map[string][]saga.Step[order]{
		"done":        {saga.Local("a", ok, ok)},
		"compensated": {saga.Local("a", ok, ok), saga.Local("b", no, nil)},
		"stuck":       {saga.Local("a", ok, no), saga.Local("b", no, nil)},
	} {
		f, err := saga.Define(name, 1, steps...)
		require.NoError(t, err)
		require.NoError(t, f.Register(r, nil))
		flows[name] = f
	}
	for name, f := range flows {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { return f.Start(tx, "order-"+name, order{Qty: 1}) }), name)
	}

	tokens, err := idem.New(db, "pay", nil)
	require.NoError(t, err)
	key := idem.Key{Scope: "alice", ID: "order-1", Scene: "pay"}
	var replays []bool
	for range 2 {
		replay, err := stm.RunValue(ctx, db, func(tx *stm.Tx) (bool, error) {
			_, replay, err := tokens.Begin(tx, key, idem.Fingerprint([]byte("1 potion")))
			if err != nil || replay {
				return replay, err
			}
			return false, tokens.Finish(tx, key, []byte("receipt"))
		})
		require.NoError(t, err)
		replays = append(replays, replay)
	}
	require.Equal(t, []bool{false, true}, replays)

	c, err := metrics.NewCollector(&metrics.Options{Sagas: metrics.SagaRunners(r), Idem: metrics.IdemTokens(tokens)})
	require.NoError(t, err)
	want := `
# HELP zest_idem_replays_total Requests answered from a stored idempotency token instead of running again.
# TYPE zest_idem_replays_total counter
zest_idem_replays_total 1
# HELP zest_sagas Sagas by state.
# TYPE zest_sagas gauge
zest_sagas{state="aborted"} 0
zest_sagas{state="compensated"} 1
zest_sagas{state="done"} 1
zest_sagas{state="running"} 0
zest_sagas{state="stuck"} 1
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want)))
}
