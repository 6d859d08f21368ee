// Package whilecommit runs in-process effects once a transaction has
// finally committed or finally rolled back.
//
// A body may run several times before it commits (package stm reruns it on
// conflict). A timer started or a job submitted inside the body would start
// once per attempt. Register it with Do instead, and it runs exactly once,
// after the commit:
//
//	err := db.Run(ctx, func(tx *stm.Tx) error {
//		bag.Put(tx, player, items)
//		whilecommit.Do(tx, func() { notify(player) })
//		return nil
//	})
//
// # Rules
//
//   - Do hooks run once, after the transaction finally commits. OnRollback
//     hooks run once, after it finally rolls back (its body returned an error
//     or panicked).
//   - Hooks registered by attempts that were rerun are dropped and never run.
//   - Hooks run in registration order.
//   - A savepoint (stm.Tx.Savepoint) that rolls back drops its Do hooks and
//     keeps its OnRollback hooks. Those run once, at the end of the whole
//     transaction, whether the outer transaction commits or rolls back. A
//     savepoint that succeeds hands its hooks to the enclosing level.
//   - Hooks run after the transaction's locks are released and, for a
//     durable commit, after its records are on disk. So a hook may start a
//     new transaction; it must not use the finished Tx.
//   - A hook that panics is recovered, logged with log/slog (the DB's
//     logger) and counted in Stats; the next hook still runs and the commit
//     stands.
//   - A transaction ended by its context or by the redo limit ran no
//     complete attempt, so none of its hooks run.
//
// # Per-transaction state
//
// A package that registers an effect on every call (package idem adds each
// new token to its expiry index) keeps it in a State instead of a closure
// per call: Attach returns the attempt's State for a key, creating it on
// first use; the State follows savepoints through Mark and RollbackTo, and
// its End runs once with the outcome, before the hooks. Registering hooks
// and attaching States allocates nothing for the first few of them: the
// per-transaction record is pooled.
//
// # Caveats
//
// Hooks are for reliable in-process effects. For a third-party system that
// can fail, use package effectqueue: after a commit there is nothing left to
// roll back, so a failed hook cannot undo the transaction.
package whilecommit
