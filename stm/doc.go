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
//     record cannot starve it. Options.MaxAttempts (ErrTooManyAttempts) and
//     the context (its own error) bound the number of attempts.
//   - Nothing acted on can be lost: with a durable log (package effectqueue)
//     in its Sync mode, Run does not return, and hooks do not run, until
//     every value the transaction read is on disk. A transaction that read
//     only older values does not wait.
//   - Nothing hangs: hooks run after every lock and the serial gate are
//     released; a Run inside a body returns ErrNestedRun at once; every wait
//     ends with the context; a panic in the body or in the commit path
//     releases everything and reaches the caller.
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
//     stale Tx panics with ErrTxDone, and on amd64 and arm64 so does a Tx
//     used from another goroutine. Handles are lent from a ring of 256 per
//     pooled transaction state, so that Run allocates nothing: a handle kept
//     by a goroutine and used by that same goroutine in the 256th, 512th, ...
//     later body on the same state acts on that running transaction instead
//     of panicking. (Other platforms take a fresh handle per Run.) Do not call Run from a body (it returns
//     ErrNestedRun); use Tx.Savepoint, or whilecommit.Do to start a
//     transaction after the commit. A body that starts a goroutine which
//     runs a transaction and waits for it may wait for a long time if the
//     body runs in serial mode: that goroutine's commit waits for the body's
//     transaction (its context still ends the wait).
//   - A conflict aborts an attempt by panicking with a private value that
//     Run recovers. A body that recovers panics must re-panic what it did
//     not throw. The attempt is discarded either way.
//   - Values stored in a Var are shared by every reader. Do not mutate a
//     stored slice, map or pointee. Package table clones values for you.
//   - Values are visible to other transactions as soon as they are
//     published, which can be before a durable commit's records reach disk.
//     A reader waits for the disk before it returns (see above); if the write
//     fails, the DB stops (ErrStopped), the writer gets ErrOutcomeUnknown and
//     the reader ErrStopped.
//   - A DB keeps a small record (64 bytes) for every goroutine that ran a
//     body, so that finding a nested Run costs no locked instruction. On
//     amd64 and arm64 the record belongs to the runtime's goroutine
//     descriptor, which the runtime reuses once its goroutine ends, so the
//     records number at most the goroutines that ever ran at the same time
//     (the runtime keeps as many descriptors itself); elsewhere a record
//     lives only while its goroutine runs a body.
package stm
