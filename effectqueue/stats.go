package effectqueue

import "time"

// Stats are a queue's counters since Open, and its backlog. A Stats is a
// plain value: a snapshot, read without locks.
type Stats struct {
	// Commits is the number of transactions written (those with entries
	// and those with only durable table records).
	Commits uint64
	// Entries is the number of entries written.
	Entries uint64
	// Writes is the number of Badger writes: Commits/Writes is the mean
	// group-commit size.
	Writes uint64
	// WriteErrors counts failed writes. The queue stops writing at the
	// first (the DB stops accepting commits, with the error as the cause),
	// so it is 0 or 1.
	WriteErrors uint64
	// AsyncLost counts transactions of an Async queue whose Run returned nil
	// and whose write then failed: applied in memory, not on disk, so gone
	// after a reopen. The failure is also logged, and the next Run returns
	// stm.ErrStopped with the cause.
	AsyncLost uint64
	// Head is the highest durable sequence number.
	Head uint64
	// Depth is the number of pending entries (see Queue.Depth).
	Depth int64
	// OldestAge is the age of the oldest pending entry (see
	// Queue.OldestAge).
	OldestAge time.Duration
	// DeadLetters is the number of dead letters (see
	// Queue.DeadLetterCount).
	DeadLetters int64
}

// Stats returns the queue's counters and backlog. It takes no lock.
func (q *Queue) Stats() Stats {
	return Stats{
		Commits:     q.stats.commits.Load(),
		Entries:     q.stats.entries.Load(),
		Writes:      q.stats.writes.Load(),
		WriteErrors: q.stats.writeErrors.Load(),
		AsyncLost:   q.stats.asyncLost.Load(),
		Head:        q.head.Load(),
		Depth:       q.Depth(),
		OldestAge:   q.OldestAge(),
		DeadLetters: q.DeadLetterCount(),
	}
}

// DeadLetterCount returns the number of dead letters. It is counted once
// at Open and kept up to date by DeadLetter, Replay and Discard, so it takes
// no lock and reads nothing: metrics may call it at any rate.
func (q *Queue) DeadLetterCount() int64 { return q.dead.Load() }

// Err returns nil while the queue writes, or the write error that stopped
// it (wrapping stm.ErrStopped and Badger's error).
func (q *Queue) Err() error { return q.w.failure() }
