package idem

// Stats are a Tokens' counters since New. Answers are counted once per
// transaction that received them, whether it then committed or rolled back;
// attempts that reran are not counted.
type Stats struct {
	// Begun counts tokens created by Begin and Once that committed.
	Begun uint64 `json:"begun"`
	// Replays counts Begin calls answered with a stored result.
	Replays uint64 `json:"replays"`
	// Mismatches counts Begin calls answered ErrMismatch.
	Mismatches uint64 `json:"mismatches"`
	// InProgress counts Begin and Once calls answered ErrInProgress.
	InProgress uint64 `json:"in_progress"`
	// Duplicates counts Once calls answered ErrDuplicate.
	Duplicates uint64 `json:"duplicates"`
	// Settled counts linked tokens settled (committed).
	Settled uint64 `json:"settled"`
	// Expired counts expired tokens removed by the sweeper.
	Expired uint64 `json:"expired"`
	// Forgotten counts tokens removed by Forget or Discard.
	Forgotten uint64 `json:"forgotten"`
	// Indexed is the number of entries in the expiry index, waiting for
	// their time (it can count a token twice, or a token already gone,
	// until the sweeper reaches them).
	Indexed int `json:"indexed"`
}

// Stats returns the counters. It is safe to call at any time; the counters
// are read one by one, not as one atomic snapshot.
func (t *Tokens) Stats() Stats {
	c := &t.stats
	return Stats{
		Begun:      c.begun.Load(),
		Replays:    c.replays.Load(),
		Mismatches: c.mismatches.Load(),
		InProgress: c.inProgress.Load(),
		Duplicates: c.duplicates.Load(),
		Settled:    c.settled.Load(),
		Expired:    c.expired.Load(),
		Forgotten:  c.forgotten.Load(),
		Indexed:    t.ix.len(),
	}
}
