// Package stm is Zest's transaction engine: optimistic, in-memory,
// serializable transactions over Vars, rerun automatically on conflict.
//
// A DB holds no data itself. Data lives in Vars, usually through package
// table, and changes only inside a body run by DB.Run:
//
//	err := db.Run(ctx, func(tx *stm.Tx) error {
//		a, _ := balance.Load(tx)
//		if a < 10 {
//			return errInsufficient // rolls back; nothing was written
//		}
//		balance.Store(tx, a-10)
//		return nil
//	})
//
// # Guarantees
//
//   - Serializable: committed transactions are equivalent to some serial order.
//   - Opaque: every attempt, even one that is later rerun, sees a state that
//     existed at one moment. A body never reads half of another commit.
//   - Read your writes, including inside savepoints (Tx.Savepoint).
//   - Errors and panics are validated first: if the body returns an error or
//     panics after reading data that has changed since, the attempt reruns
//     instead of reporting it.
//   - Progress: after Options.EscalateAfter failed attempts a transaction
//     runs in serial mode (other update commits wait for it), so a hot
//     record cannot starve it. Options.MaxAttempts and the context bound the
//     number of attempts.
//
// # How it works
//
// The algorithm is TL2 with snapshot extension. A global clock orders
// commits. Each record (a cell) has a meta word holding its version, a lock
// bit and a present bit, beside its value. A pointer-free value of up to 8
// bytes lives in an atomic word, and any other value behind an atomic pointer
// to an immutable copy. A read checks the record's version against the
// transaction's snapshot. If it is newer, the read moves the snapshot forward
// when everything read so far is unchanged, and otherwise reruns. Writes are
// buffered. A commit locks its write set in a fixed order, takes a version,
// validates its reads, and publishes. The commit.go file describes the steps;
// durable.go describes the seam through which the effect queue joins a commit.
//
// # Caveats
//
//   - A body may run many times. Do no I/O in it and change nothing outside the
//     transaction. Goroutines it starts, channels it sends on and files it
//     writes are not rolled back. Register effects with package whilecommit
//     (in-process) or package effectqueue (other systems).
//   - A Tx belongs to one goroutine and is valid only inside its body. A
//     stale Tx panics with ErrTxDone.
//   - A conflict aborts an attempt by panicking with a private value that
//     Run recovers. A body that recovers panics must re-panic what it did
//     not throw. The attempt is discarded either way.
//   - Values stored in a Var are shared by every reader. Do not mutate a
//     stored slice, map or pointee. Package table clones values for you.
//   - Values are visible to other transactions as soon as they are
//     published, which can be before a durable commit's records reach disk
//     (Run waits for disk before returning). If that write then fails, the
//     DB stops (ErrStopped) instead of running ahead of disk.
package stm
