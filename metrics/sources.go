package metrics

import (
	"github.com/zest-stm/zest/mover"
)

// Mover is what the collector reads from a mover; *mover.Mover implements
// it.
//
// Stats is called once per scrape, possibly by several scrapes at once, and
// must be safe to call concurrently with the mover's work.
type Mover interface {
	Stats() mover.Stats
}

// SagaSource reports how many sagas are in each state ("running", "stuck",
// ...); SagaRunners makes one of saga runners. The states must be a small
// fixed set: each becomes a value of the "state" label of zest_sagas.
//
// SagasByState is called once per scrape and must be safe for concurrent
// use; it should be cheap (counters kept as sagas change state, not a scan).
type SagaSource interface {
	SagasByState() map[string]int64
}

// IdemSource reports how many requests were answered from a stored
// idempotency token (a replay) instead of running again; IdemTokens makes
// one of idem token tables.
//
// Replays is called once per scrape and must be safe for concurrent use.
type IdemSource interface {
	Replays() uint64
}

// SagaSourceFunc adapts a function to SagaSource. It is as safe for
// concurrent use as the function is.
type SagaSourceFunc func() map[string]int64

// SagasByState calls f.
func (f SagaSourceFunc) SagasByState() map[string]int64 { return f() }

// IdemSourceFunc adapts a function to IdemSource. It is as safe for
// concurrent use as the function is.
type IdemSourceFunc func() uint64

// Replays calls f.
func (f IdemSourceFunc) Replays() uint64 { return f() }
