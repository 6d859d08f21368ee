package metrics

import (
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/saga"
)

// SagaRunners returns a SagaSource that reports the sagas of runners by
// state, summed: running, stuck, done, compensated and aborted, from each
// runner's Counters. The counters are read one by one, so a saga that ends
// during the read can make "running" one short for that scrape; it is never
// reported below zero.
func SagaRunners(runners ...*saga.Runner) SagaSource {
	return SagaSourceFunc(func() map[string]int64 {
		var sum saga.Counters
		for _, r := range runners {
			c := r.Counters()
			sum.Running += c.Running
			sum.Stuck += c.Stuck
			sum.Done += c.Done
			sum.Compensated += c.Compensated
			sum.Aborted += c.Aborted
		}
		return map[string]int64{
			"running":     max(sum.Running, 0),
			"stuck":       sum.Stuck,
			"done":        sum.Done,
			"compensated": sum.Compensated,
			"aborted":     sum.Aborted,
		}
	})
}

// IdemTokens returns an IdemSource that reports the replays of the token
// tables, summed (idem.Stats.Replays: Begin calls answered with a stored
// result).
func IdemTokens(tokens ...*idem.Tokens) IdemSource {
	return IdemSourceFunc(func() uint64 {
		var n uint64
		for _, t := range tokens {
			n += t.Stats().Replays
		}
		return n
	})
}
