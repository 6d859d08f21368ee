// Package stress holds Zest's long-running concurrency, fault and crash
// tests. They run under the race detector; `make test` runs each scenario
// briefly, `make stress` for longer (-stress.duration), and both print one
// summary table.
//
// Every scenario checks named invariants, counts violations (which must be
// 0), checks that it leaked no goroutine, and on a violation saves its seed
// and history under stress/failures/ so that the run can be replayed with
// -stress.seed.
package stress
