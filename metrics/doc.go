// Package metrics exports Zest's state to Prometheus: a collector that the
// application registers with its own registry.
//
//	c, err := metrics.NewCollector(&metrics.Options{
//		DB:     db,
//		Queues: map[string]*effectqueue.Queue{"main": q},
//		Movers: map[string]metrics.Mover{"main": m},
//	})
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(c)
//	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Nothing is registered at import time, and nothing is counted in the commit
// path for this package: a scrape reads the counters that stm, whilecommit,
// effectqueue and mover keep anyway, and turns them into constant metrics.
//
// # Metrics
//
// From Options.DB (package stm and whilecommit):
//
//	zest_stm_commits_total                      counter
//	zest_stm_reruns_total{cause}                counter  stale_read, locked, validation, error_after_stale_read, panic_after_stale_read
//	zest_stm_escalations_total                  counter  switches to serial mode
//	zest_stm_aborts_total{reason}               counter  error, panic, canceled, redo_limit
//	zest_stm_conflicts_total{table}             counter  reruns by table; "(none)" for records in no table
//	zest_hooks_run_total                        counter
//	zest_hooks_panics_total                     counter
//
// From Options.Queues, one series per queue name:
//
//	zest_queue_depth{queue}                     gauge    entries committed, not acked or dead-lettered
//	zest_queue_oldest_age_seconds{queue}        gauge    age of the oldest pending entry
//	zest_queue_dead_letters{queue}              gauge    the queue's own count (effectqueue.Queue.DeadLetterCount)
//	zest_queue_commits_total{queue}             counter  transactions written (entries or durable records)
//	zest_queue_entries_total{queue}             counter
//	zest_queue_writes_total{queue}              counter  Badger writes; commits/writes = mean group size
//	zest_queue_write_errors_total{queue}        counter  0 or 1: the first stops the DB
//	zest_queue_async_lost_total{queue}          counter  Async commits whose write failed
//
// From Options.Movers:
//
//	zest_mover_deliveries_total{queue,sink,outcome}   counter    delivered, retried, dead_lettered
//	zest_mover_delivery_duration_seconds{queue,sink}  histogram  commit to confirmation
//	zest_mover_lanes_blocked{queue}                   gauge      ordering keys waiting to retry
//	zest_mover_in_flight{queue}                       gauge
//	zest_mover_paused{queue}                          gauge      1 if an operator paused it
//	zest_mover_superseded_total{queue}                counter    skipped for a newer entry (Coalesce)
//	zest_mover_state_write_retries_total{queue}       counter    failed ack/dead-letter writes, retried
//
// From Options.Sagas (SagaRunners(runner)) and Options.Idem
// (IdemTokens(tokens)):
//
//	zest_sagas{state}                           gauge    running, stuck, done, compensated, aborted
//	zest_idem_replays_total                     counter  requests answered from a stored token
//
// # Cost of a scrape
//
// A scrape takes no lock that a commit holds while it runs, and holds none
// of the engine's while it calls the next source. It reads atomics: the stm
// and hook counters, the queue's statistics (its dead letters included:
// the queue keeps their count), and the mover's counters and latency
// histograms (mover.Stats takes the mover's own lock briefly). The label
// pairs of each series are built once and reused, and the values of one
// scrape are allocated together. What is left per scrape is mostly the
// client library's: the registry's Gather, the text encoding, and gzip.
//
// BenchmarkScrape gives the CPU time and allocations of one scrape over
// HTTP; BenchmarkCommitsScrapeWindows measures durable commits with a
// scrape every 100 ms switched on and off in alternating windows of one
// run, and BenchmarkCommitsWhileScraped in separate runs.
//
// # Caveats
//
//   - The counters are read one by one, not as one snapshot: a scrape during
//     commits can show, say, a commit counted before its hook.
//   - Counters restart at zero when the process restarts (Prometheus's rate
//     handles this); queue depth and dead letters are read from the queue and
//     survive restarts.
//   - Two collectors in one registry must not export the same series: for
//     two DBs in one process, register each collector with
//     prometheus.WrapRegistererWith and a label that tells them apart.
//   - A closed queue still reports its last counts. A source the
//     application supplied (a Mover, SagaSource or IdemSource) that panics
//     is recovered, logged at Error, and fails its metrics in the scrape
//     (ErrSourcePanicked; see promhttp.HandlerOpts.ErrorHandling for what
//     the scraper sees); so does a label value that is not UTF-8. The other
//     metrics are still collected.
//   - Label values come from names fixed at construction or by the
//     application (queue, sink and table names, saga states): keep them
//     few, as Prometheus stores one series per value.
package metrics
