package metrics

import "github.com/prometheus/client_golang/prometheus"

// descs are the descriptions of every metric the package exports. Names
// follow Prometheus conventions: base units (seconds), _total for counters,
// and labels whose values come from small fixed sets (queue and sink names
// given at construction, rerun causes, table names, saga states).
type descs struct {
	commits, escalations, aborts, reruns, conflicts *prometheus.Desc
	hooksRun, hooksPanics                           *prometheus.Desc

	queueDepth, queueOldest, queueDead                                        *prometheus.Desc
	queueCommits, queueEntries, queueWrites, queueWriteErrors, queueAsyncLost *prometheus.Desc

	moverDeliveries, moverDuration, moverLanesBlocked, moverInFlight, moverPaused *prometheus.Desc
	moverSuperseded, moverStateRetries                                            *prometheus.Desc

	sagas, idemReplays *prometheus.Desc
}

func newDescs() descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return descs{
		commits:     d("zest_stm_commits_total", "Transactions that committed."),
		escalations: d("zest_stm_escalations_total", "Transactions that switched to serial mode after repeated conflicts."),
		aborts:      d("zest_stm_aborts_total", "Transactions that ended without committing, by reason: error (the body returned one), panic, canceled (context), redo_limit.", "reason"),
		reruns:      d("zest_stm_reruns_total", "Attempts discarded and run again, by cause.", "cause"),
		conflicts:   d("zest_stm_conflicts_total", "Reruns by the table of the record that caused them ((none) for records in no table).", "table"),
		hooksRun:    d("zest_hooks_run_total", "whilecommit hooks called."),
		hooksPanics: d("zest_hooks_panics_total", "whilecommit hooks that panicked (recovered and logged; the commit stands)."),

		queueDepth:  d("zest_queue_depth", "Committed entries not yet acked or dead-lettered.", "queue"),
		queueOldest: d("zest_queue_oldest_age_seconds", "Time since the commit of the oldest pending entry (0 if none).", "queue"),
		queueDead:   d("zest_queue_dead_letters", "Dead letters waiting for an operator.", "queue"),

		queueCommits:     d("zest_queue_commits_total", "Transactions written by the queue (with entries or durable table records).", "queue"),
		queueEntries:     d("zest_queue_entries_total", "Entries written.", "queue"),
		queueWrites:      d("zest_queue_writes_total", "Badger writes (group commits): commits_total / writes_total is the mean group size.", "queue"),
		queueWriteErrors: d("zest_queue_write_errors_total", "Failed writes; after the first, the DB stops accepting commits.", "queue"),
		queueAsyncLost:   d("zest_queue_async_lost_total", "Async-mode transactions reported committed whose write then failed.", "queue"),

		moverDeliveries:   d("zest_mover_deliveries_total", "Delivery outcomes by sink: delivered (confirmed), retried (failed, will retry), dead_lettered.", "queue", "sink", "outcome"),
		moverDuration:     d("zest_mover_delivery_duration_seconds", "Time from commit to the sink's confirmation.", "queue", "sink"),
		moverLanesBlocked: d("zest_mover_lanes_blocked", "Ordering keys whose head entry is failing and waiting to be retried.", "queue"),
		moverInFlight:     d("zest_mover_in_flight", "Entries being applied to a sink now.", "queue"),
		moverPaused:       d("zest_mover_paused", "1 if an operator paused the mover.", "queue"),
		moverSuperseded:   d("zest_mover_superseded_total", "Entries skipped because a newer entry of the same key replaced them (Coalesce).", "queue"),
		moverStateRetries: d("zest_mover_state_write_retries_total", "Failed writes of the mover's own state (acks, dead letters) that were retried.", "queue"),

		sagas:       d("zest_sagas", "Sagas by state.", "state"),
		idemReplays: d("zest_idem_replays_total", "Requests answered from a stored idempotency token instead of running again."),
	}
}

// of returns the descriptions of what o's sources export.
func (d *descs) of(o Options) []*prometheus.Desc {
	var out []*prometheus.Desc
	if o.DB != nil {
		out = append(out, d.commits, d.escalations, d.aborts, d.reruns, d.conflicts, d.hooksRun, d.hooksPanics)
	}
	if len(o.Queues) > 0 {
		out = append(out, d.queueDepth, d.queueOldest, d.queueDead,
			d.queueCommits, d.queueEntries, d.queueWrites, d.queueWriteErrors, d.queueAsyncLost)
	}
	if len(o.Movers) > 0 {
		out = append(out, d.moverDeliveries, d.moverDuration, d.moverLanesBlocked, d.moverInFlight, d.moverPaused,
			d.moverSuperseded, d.moverStateRetries)
	}
	if o.Sagas != nil {
		out = append(out, d.sagas)
	}
	if o.Idem != nil {
		out = append(out, d.idemReplays)
	}
	return out
}
