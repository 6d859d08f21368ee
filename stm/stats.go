package stm

import (
	"sync/atomic"
)

// Cause says why an attempt was rerun.
type Cause uint8

// The causes of a rerun.
const (
	// CauseStale: a read found a record written after the snapshot, and
	// the snapshot could not be moved forward.
	CauseStale Cause = iota
	// CauseLocked: a record stayed locked by another commit too long.
	CauseLocked
	// CauseValidate: at commit, a record read had been changed.
	CauseValidate
	// CauseErrorStale: the body returned an error after reading stale data.
	CauseErrorStale
	// CausePanicStale: the body panicked after reading stale data.
	CausePanicStale
	numCauses
)

var causeNames = [numCauses]string{"stale read", "locked", "validation", "error after stale read", "panic after stale read"}

// String returns the cause as words.
func (c Cause) String() string {
	if c < numCauses {
		return causeNames[c]
	}
	return "unknown"
}

// maxTracked is the largest attempt count the histogram tells apart.
const maxTracked = 128

type counters struct {
	rollbacks   atomic.Uint64
	panics      atomic.Uint64
	canceled    atomic.Uint64
	redoLimit   atomic.Uint64
	escalations atomic.Uint64
	reruns      [numCauses]atomic.Uint64
	ungrouped   atomic.Uint64
	attempts    [maxTracked + 1]atomic.Uint64 // attempts[n]: commits after n attempts; their sum counts commits
	maxAttempts atomic.Uint64
}

func (s *counters) rerun(c *conflict) {
	s.reruns[c.cause].Add(1)
	if c.group != nil {
		c.group.conflicts.Add(1)
	} else {
		s.ungrouped.Add(1)
	}
}

func (s *counters) commit(attempts int) {
	s.attempts[min(attempts, maxTracked)].Add(1)
	a := uint64(attempts)
	for m := s.maxAttempts.Load(); a > m && !s.maxAttempts.CompareAndSwap(m, a); m = s.maxAttempts.Load() {
	}
}

// Stats is a snapshot of a DB's counters since Open.
type Stats struct {
	// Commits counts transactions that committed.
	Commits uint64
	// Rollbacks counts bodies that returned an error (after validation).
	Rollbacks uint64
	// Panics counts bodies that panicked (after validation).
	Panics uint64
	// Canceled counts transactions ended by their context between attempts.
	Canceled uint64
	// RedoLimit counts transactions that reached Options.MaxAttempts.
	RedoLimit uint64
	// Escalations counts transactions that switched to serial mode.
	Escalations uint64
	// Reruns counts discarded attempts; RerunsByCause splits them.
	Reruns        uint64
	RerunsByCause map[Cause]uint64
	// Conflicts counts reruns by the group (table) of the record that
	// caused them; "" for records in no group.
	Conflicts map[string]uint64
	// AttemptsP50, P90 and P99 are percentiles of attempts per committed
	// transaction (a value of 128 means 128 or more); AttemptsMax is the
	// largest seen.
	AttemptsP50, AttemptsP90, AttemptsP99, AttemptsMax uint64
}

// Stats returns the DB's counters. It is safe to call at any time; the
// counters are read one by one, not as one atomic snapshot.
func (db *DB) Stats() Stats {
	s := &db.stats
	st := Stats{
		Rollbacks:     s.rollbacks.Load(),
		Panics:        s.panics.Load(),
		Canceled:      s.canceled.Load(),
		RedoLimit:     s.redoLimit.Load(),
		Escalations:   s.escalations.Load(),
		RerunsByCause: make(map[Cause]uint64),
		Conflicts:     make(map[string]uint64),
		AttemptsMax:   s.maxAttempts.Load(),
	}
	for c := range numCauses {
		if n := s.reruns[c].Load(); n > 0 {
			st.RerunsByCause[c] = n
			st.Reruns += n
		}
	}
	if n := s.ungrouped.Load(); n > 0 {
		st.Conflicts[""] = n
	}
	db.mu.Lock()
	for name, g := range db.mu.groups {
		if n := g.conflicts.Load(); n > 0 {
			st.Conflicts[name] = n
		}
	}
	db.mu.Unlock()
	var hist [maxTracked + 1]uint64
	var total uint64
	for i := range hist {
		hist[i] = s.attempts[i].Load()
	}
	hist[1] += db.bodies.commits()
	if hist[1] > 0 && st.AttemptsMax == 0 {
		st.AttemptsMax = 1
	}
	for _, n := range hist {
		total += n
	}
	st.Commits = total
	pct := func(p uint64) uint64 {
		if total == 0 {
			return 0
		}
		want := (total*p + 99) / 100
		var seen uint64
		for i, n := range hist {
			if seen += n; seen >= want {
				return uint64(i)
			}
		}
		return maxTracked
	}
	st.AttemptsP50, st.AttemptsP90, st.AttemptsP99 = pct(50), pct(90), pct(99)
	return st
}
