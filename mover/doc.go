// Package mover carries committed entries of an effect queue to the outside
// world (an S3-compatible store with package s3sink, NATS JetStream with
// package natssink, or any Sink), in order, retrying until they land.
//
//	m, _ := mover.New(q, map[string]mover.Sink{"s3": sink}, nil)
//	go m.Run(ctx)
//	...
//	m.Shutdown(ctx) // finish what is in flight, take nothing new
//
// # Guarantees
//
//   - Entries with the same ordering key are applied one at a time, in
//     sequence (commit) order. Different keys run in parallel, up to
//     Options.Concurrency, and a failing key blocks only its own lane. A
//     sink that implements BatchSink gets the head entries of up to
//     Options.BatchSize keys per call (one entry per key), so that their
//     round trips overlap; per-key order is the same.
//   - An entry is acked only after its sink confirmed it. After a crash the
//     mover resumes from the queue's persisted state. Acks are written in
//     batches and not fsynced (the lease is): a kill -9 loses none, a power
//     failure can lose the last ones, and those entries, being below the
//     lease, are delivered again as possibly landed. The acks lost are the
//     newest ones, so an entry comes back only with every newer entry of
//     its key: s3sink finds the entry or a newer one of this queue on the
//     object and writes nothing (or re-applies the older and then the
//     newer, ending where it was), natssink finds it on the subject's
//     chain. Nothing visible is lost or duplicated.
//   - Effectively once. Entries a previous run may have applied (the mover
//     persists how far it may have gone, a lease, before applying), and
//     every retry, are delivered with Delivery.MayHaveLanded, so the sink
//     checks what landed. Delivery.Writer (the queue's id) with Item.Seq
//     identifies the write: sequence numbers of another queue, or of a
//     recreated one, are never taken for this one's. An older such entry
//     whose key has a newer one waiting is skipped, because the newer one
//     replaces its effect.
//   - Failures are retried with capped exponential backoff and full jitter.
//     Permanent errors (see Permanent) and exhausted attempts go to the
//     queue's dead letters with the reason.
//   - The mover's own state writes (acks, dead letters) are retried with
//     backoff until they land, never dropped: an entry whose dead letter
//     cannot be written holds its lane, so no later entry of its key
//     overtakes it, and unwritten acks hold back further reads.
//   - Commits wake the mover (no polling delay); a slow poll is the fallback.
//   - Shutdown stops taking entries, and finishes or abandons those in
//     flight by its deadline. It never dead-letters because of shutdown.
//   - One mover per queue in a process: a second New on the same queue
//     returns ErrQueueTaken until the first one's Run has returned. Two
//     processes cannot open the same queue directory (Badger locks it).
//
// # Operating it
//
// Pause and Resume stop and restart deliveries (in memory: see
// Options.StartPaused to keep a pause across restarts). Lanes lists the
// keys being applied or failing, with the error class (ErrorClass) and the
// next retry. Stats has the counters, per sink too, with a latency
// histogram.
//
// Logs stay quiet during an outage: a lane that starts failing is logged
// once at Warn with its error class and next retry, its recovery once at
// Info with how long it failed and how many attempts; at most 10 such lines
// per Options.LogInterval, plus one summary line per interval while lanes
// fail. Each failed attempt is logged at Debug.
//
// # Caveats
//
//   - The retry state (attempt count) is persisted at attempts 1, 2, 4, 8,
//     ... and whenever the backoff reaches a second: after a crash, an
//     entry's count may restart from the last power of two.
//   - Coalescing (Options.Coalesce) skips intermediate versions of an
//     object: readers may never see them. It is off by default.
//   - After a crash, the skip of superseded entries sees only entries
//     buffered together (Options.MaxBuffered). With a longer backlog, an old
//     version of an object can be visible briefly before its newer one lands
//     again.
//   - A Sink that panics is recovered: the attempt counts as a retryable
//     failure of class "panic", logged with its stack.
//   - A Mover that is created and never run keeps its queue claimed until
//     Shutdown is called.
package mover
