package effectqueue

import "slices"

// seqSet is a set of sequence numbers kept as sorted, disjoint, non-adjacent
// closed ranges. The queue keeps in one the entries above its cursor that
// were acked or dead-lettered out of order, so that an Ack knows without a
// read whether an entry is still pending, and where the cursor moves to.
// Acks mostly arrive in order, so it holds a handful of ranges; its size is
// bounded by the number of pending entries.
//
// A seqSet is not safe for concurrent use: the queue guards it with
// consumer.mu.
type seqSet struct {
	r []seqRange
}

type seqRange struct{ lo, hi uint64 }

// find returns the index of the first range whose hi is >= s.
func (x *seqSet) find(s uint64) int {
	i, _ := slices.BinarySearchFunc(x.r, s, func(r seqRange, s uint64) int {
		switch {
		case r.hi < s:
			return -1
		case r.hi > s:
			return 1
		}
		return 0
	})
	return i
}

// has reports whether s is in the set.
func (x *seqSet) has(s uint64) bool {
	i := x.find(s)
	return i < len(x.r) && x.r[i].lo <= s
}

// add puts s in the set.
func (x *seqSet) add(s uint64) {
	i := x.find(s)
	if i < len(x.r) && x.r[i].lo <= s {
		return
	}
	joinPrev := i > 0 && x.r[i-1].hi+1 == s
	joinNext := i < len(x.r) && x.r[i].lo == s+1
	switch {
	case joinPrev && joinNext:
		x.r[i-1].hi = x.r[i].hi
		x.r = slices.Delete(x.r, i, i+1)
	case joinPrev:
		x.r[i-1].hi = s
	case joinNext:
		x.r[i].lo = s
	default:
		x.r = slices.Insert(x.r, i, seqRange{s, s})
	}
}

// addRange puts lo..hi in the set.
// REQUIRES: every number in the set is below lo (ranges are added in
// increasing order, as Open finds them).
func (x *seqSet) addRange(lo, hi uint64) {
	if lo > hi {
		return
	}
	if n := len(x.r); n > 0 && x.r[n-1].hi+1 == lo {
		x.r[n-1].hi = hi
		return
	}
	x.r = append(x.r, seqRange{lo, hi})
}

// next returns the smallest number >= s that is not in the set.
func (x *seqSet) next(s uint64) uint64 {
	i := x.find(s)
	if i < len(x.r) && x.r[i].lo <= s {
		return x.r[i].hi + 1
	}
	return s
}

// dropBelow removes every number below s.
func (x *seqSet) dropBelow(s uint64) {
	i := x.find(s)
	if i < len(x.r) && x.r[i].lo < s {
		x.r[i].lo = s
	}
	x.r = slices.Delete(x.r, 0, i)
}

// len returns the number of ranges.
func (x *seqSet) len() int { return len(x.r) }
