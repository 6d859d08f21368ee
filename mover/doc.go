// Package mover carries committed entries of an effect queue to the outside
// world (an S3-compatible store with package s3sink, or any Sink), in order,
// retrying until they land.
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
//     Options.Concurrency, and a failing key blocks only its own lane.
//   - An entry is acked only after its sink confirmed it. After a crash the
//     mover resumes from the queue's persisted state.
//   - Effectively once. Entries a previous run may have applied (the mover
//     persists how far it may have gone, a lease, before applying), and
//     every retry, are delivered with Delivery.MayHaveLanded, so the sink
//     checks what landed. An older such entry whose key has a newer one
//     waiting is skipped, because the newer one replaces its effect.
//   - Failures are retried with capped exponential backoff and full jitter.
//     The attempt count is persisted with the entry. Permanent errors (see
//     Permanent) and exhausted attempts go to the queue's dead letters with
//     the reason.
//   - Commits wake the mover (no polling delay); a slow poll is the fallback.
//   - Shutdown stops taking entries, and finishes or abandons those in
//     flight by its deadline. It never dead-letters because of shutdown.
//
// # Caveats
//
//   - One mover per queue. The per-key order relies on it.
//   - Coalescing (Options.Coalesce) skips intermediate versions of an
//     object: readers may never see them. It is off by default.
//   - After a crash, the skip of superseded entries sees only entries
//     buffered together (Options.MaxBuffered). With a longer backlog, an old
//     version of an object can be visible briefly before its newer one lands
//     again.
package mover
