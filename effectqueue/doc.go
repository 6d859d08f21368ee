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
//     Every commit the failure catches gets an error of the engine, with
//     Badger's error only inside: stm.ErrOutcomeUnknown if it was applied in
//     memory and queued for the failed write (it may or may not be on disk),
//     stm.ErrStopped if it was refused. Reopen the DB and the queue to
//     continue from what is on disk.
//   - In Async mode a write that fails after Run returned nil is never
//     silent: Stats.AsyncLost counts the commits lost, an Error log line
//     says how many, the next Run returns stm.ErrStopped with the cause,
//     and Close returns the error.
//   - Close racing commits: each commit is written, or fails with
//     ErrClosed (or stm.ErrNoLog, for one with only table records, once the
//     queue has detached). Consumer calls racing Close return ErrClosed.
//   - Bad input is refused at Enqueue with an error: an empty kind, an entry
//     over Options.MaxEntrySize, a transaction too large for one atomic write,
//     a finished Tx, a Tx of another DB (stm.ErrWrongDB), a closed queue.
//     Nothing is written for it. Invalid Options are refused by Open, every
//     invalid field named in one error (ErrInvalidOptions).
//   - Open with Dir after a kill -9 succeeds: empty memtable and value-log
//     files, which Badger leaves when it is killed while creating them and
//     then refuses to open, are removed under Badger's directory lock, with
//     a warning.
//
// # Consumers
//
// Read from a position, Wait or Notify for new commits (no polling), Ack
// what was delivered (idempotent, persisted), DeadLetter what cannot be
// delivered, with a reason; list, Replay or Discard dead letters
// (DeadLetterCount counts them without a read). Wait
// returns when there is a pending entry to read after the position, not
// merely a higher head, so a consumer whose entries were acked meanwhile
// does not spin. Depth and OldestAge measure the backlog; they read
// atomics, so metrics can call them at any rate, and OldestAge is always the
// age of the oldest pending entry, whatever the order of the acks. Stats
// adds the writer's counters. Acked entries are deleted, and reads seek past
// them. On a Badger it owns, the queue runs the value-log GC on a timer.
//
// # What is synced
//
// On a Badger the queue opens (Dir), commits, dead letters, Replay, Discard,
// retry states and consumer state (the mover's attempt lease) are fsynced
// before the call returns. Acks are written but not fsynced: an Ack is
// decided in memory (the queue knows which entries are pending) and costs a
// blind deletion, and the next durable write syncs it. A kill -9 loses no
// ack (the page cache has it); a power failure or OS crash can lose the
// acks written since the last durable write, and those entries are then
// pending again. They are below the mover's attempt lease, which is
// durable, so the mover delivers them again as possibly landed and the
// sink checks what landed first (see package mover): no lost and no
// duplicated visible effect. Commits are never affected: a commit is
// fsynced before Run returns, exactly as before.
//
// # Caveats
//
//   - One queue per stm.DB: the queue is the DB's durable log.
//   - The removal of empty files after a crash needs flock (Linux, macOS,
//     the BSDs). Elsewhere Open leaves them, and Badger may refuse to open
//     until they are removed by hand.
//   - A commit waits for its write without a context (the write is already
//     under way when the body returns); the writer always ends the wait: the
//     write lands, fails, or the queue closes.
//   - Async mode trades the newest transactions on a crash for commit
//     latency; see Durability.
//   - Tables made with table.New are in memory only: after a crash they are
//     gone while the queue keeps its entries. Tables made with
//     table.NewDurable are written in the same atomic write as the entries,
//     and loaded back on open.
package effectqueue
