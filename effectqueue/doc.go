// Package effectqueue is a durable FIFO of effects for other systems,
// written inside stm transactions and committed atomically with them.
//
// A transaction body must not call an outside system: it may run several
// times, and may roll back. It enqueues the call instead:
//
//	err := db.Run(ctx, func(tx *stm.Tx) error {
//		bag.Put(tx, player, items)
//		return q.Enqueue(tx, effectqueue.Entry{Kind: "s3.put", Key: "receipts/42", Payload: body})
//	})
//
// and a consumer (package mover) reads committed entries in order, applies
// them, and acks them.
//
// # Guarantees
//
//   - An entry becomes durable and visible to readers if and only if its
//     transaction commits. Attempts that rerun or roll back, and savepoints
//     that roll back, leave nothing.
//   - In Sync mode (the default), Run returns nil only after the
//     transaction's entries are on disk (Badger, fsynced). A crash at any
//     instant leaves all of a transaction's entries or none.
//   - Every entry gets a sequence number. Sequence order is a valid
//     serialization order of the committing transactions, with no gaps and no
//     reuse, also across restarts. Readers see only a gap-free prefix.
//   - Concurrent commits share one Badger write and one fsync (group
//     commit).
//   - If a write fails, the DB stops accepting commits (stm.ErrStopped,
//     with the cause) rather than let memory and disk disagree unnoticed.
//     The transactions whose write failed get stm.ErrOutcomeUnknown. Reopen the
//     DB and the queue to continue from what is on disk.
//   - Bad input is refused at Enqueue with an error: an empty kind, an entry
//     over Options.MaxEntrySize, a transaction too large for one atomic write,
//     a finished Tx, a closed queue.
//
// # Consumers
//
// Read from a position, Wait or Notify for new commits (no polling), Ack
// what was delivered (idempotent, persisted), DeadLetter what cannot be
// delivered, with a reason; list, Replay or Discard dead letters. Depth and
// OldestAge measure the backlog. Acked entries are deleted, and reads seek
// past them. On a Badger it owns, the queue runs the value-log GC on a
// timer.
//
// # Caveats
//
//   - One queue per stm.DB: the queue is the DB's durable log.
//   - Async mode trades the newest transactions on a crash for commit
//     latency; see Durability.
//   - Tables made with table.New are in memory only: after a crash they are
//     gone while the queue keeps its entries. Tables made with
//     table.NewDurable are written in the same atomic write as the entries,
//     and loaded back on open.
package effectqueue
