package effectqueue

import (
	"math/rand/v2"
	"testing"
)

// TestSeqSetModel drives a seqSet and a map with the same random
// operations and checks, after each, that they agree on every number in
// range, that next and the ranges' shape (sorted, disjoint, not adjacent)
// hold. The seed is printed.
func TestSeqSetModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for round := range 200 {
		var x seqSet
		model := map[uint64]bool{}
		low := uint64(0) // dropBelow's bound so far: nothing below it
		for step := range 200 {
			switch op := r.IntN(10); {
			case op < 7:
				s := low + uint64(r.IntN(64))
				x.add(s)
				model[s] = true
			case op < 8:
				lo := low + uint64(r.IntN(64))
				hi := lo + uint64(r.IntN(8))
				// addRange requires everything in the set to be below lo.
				if n := len(x.r); n == 0 || x.r[n-1].hi < lo {
					x.addRange(lo, hi)
					for s := lo; s <= hi; s++ {
						model[s] = true
					}
				}
			default:
				low += uint64(r.IntN(8))
				x.dropBelow(low)
				for s := range model {
					if s < low {
						delete(model, s)
					}
				}
			}
			for i, rg := range x.r {
				if rg.lo > rg.hi || i > 0 && x.r[i-1].hi+1 >= rg.lo {
					t.Fatalf("round %d step %d: bad ranges %v", round, step, x.r)
				}
			}
			for s := uint64(0); s < low+80; s++ {
				if x.has(s) != model[s] {
					t.Fatalf("round %d step %d: has(%d) = %v, model %v; ranges %v", round, step, s, x.has(s), model[s], x.r)
				}
				want := s
				for model[want] {
					want++
				}
				if got := x.next(s); got != want {
					t.Fatalf("round %d step %d: next(%d) = %d, want %d; ranges %v", round, step, s, got, want, x.r)
				}
			}
		}
	}
}
