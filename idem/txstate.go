package idem

import (
	"fmt"
	"sync"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// txState is one attempt's view of the tokens it wrote in one Tokens, kept
// beside the transaction with whilecommit.Attach. It serves two purposes:
//
//   - A call on a key the transaction already wrote (Finish after Begin)
//     takes the token from here: no second encoding of the key, no second
//     table read.
//   - What must happen once the transaction ends (index new tokens, bump
//     counters, log forgotten keys) is done by its End, without a closure
//     per call.
//
// It is pooled: End empties it and puts it back.
type txState struct {
	t *Tokens
	// writes are the transaction's token writes in order, the latest for a
	// key last. A savepoint that rolls back truncates them, as it undoes
	// the table writes they mirror.
	writes []tokenWrite
	// byKey indexes writes (latest per key) once they outgrow a linear
	// scan.
	byKey map[Key]int
	// answers are counted when the transaction ends, whether it commits or
	// rolls back (a body often returns the error it was given), and are
	// not undone by a savepoint's rollback.
	answers [numAnswers]uint64
	// clock is the transaction's clock reading (Unix ns), taken at its
	// first call that needs one; hasClock tells whether it was.
	clock    int64
	hasClock bool

	inline [2]tokenWrite
}

// tokenWrite is a token as the transaction wrote it.
type tokenWrite struct {
	key     Key
	k       string // key's table key
	tok     token
	deleted bool
	effect  effect
}

// effect is what a committed write does besides the table write.
type effect uint8

const (
	noEffect effect = iota
	// effectBegun indexes the token's expiry and counts it begun.
	effectBegun
	// effectSettled indexes the token's expiry and counts it settled.
	effectSettled
	// effectForgotten counts and logs a token removed by Forget.
	effectForgotten
)

// answer is a Begin or Once outcome counted in Stats.
type answer uint8

const (
	answerReplay answer = iota
	answerMismatch
	answerInProgress
	answerDuplicate
	numAnswers
)

// linearMax is the number of writes up to which find scans them.
const linearMax = 8

var statePool = sync.Pool{New: func() any {
	s := new(txState)
	s.writes = s.inline[:0]
	return s
}}

// newTxState is Attach's create function: a plain function, so that
// finding the state allocates no closure.
func newTxState() whilecommit.State { return statePool.Get().(*txState) }

// state returns tx's txState for t, after checking that tx is live and
// belongs to t's DB.
func (t *Tokens) state(tx *stm.Tx) (*txState, error) {
	if err := tx.Err(); err != nil {
		return nil, fmt.Errorf("idem: %w", err)
	}
	if tx.DB() != t.db {
		return nil, ErrWrongDB
	}
	s := whilecommit.Attach(tx, t, newTxState).(*txState)
	s.t = t
	return s, nil
}

// find returns the transaction's latest write of key, or nil.
func (s *txState) find(key Key) *tokenWrite {
	if s.byKey != nil {
		if i, ok := s.byKey[key]; ok {
			return &s.writes[i]
		}
		return nil
	}
	for i := len(s.writes) - 1; i >= 0; i-- {
		if s.writes[i].key == key {
			return &s.writes[i]
		}
	}
	return nil
}

// wrote records a write of key (k in the table): tok, or a delete.
func (s *txState) wrote(key Key, k string, tok token, deleted bool, e effect) {
	s.writes = append(s.writes, tokenWrite{key: key, k: k, tok: tok, deleted: deleted, effect: e})
	switch n := len(s.writes); {
	case s.byKey != nil:
		s.byKey[key] = n - 1
	case n > linearMax:
		s.reindex()
	}
}

func (s *txState) reindex() {
	if s.byKey == nil {
		s.byKey = make(map[Key]int, 2*len(s.writes))
	} else {
		clear(s.byKey)
	}
	for i := range s.writes {
		s.byKey[s.writes[i].key] = i
	}
}

func (s *txState) count(a answer) { s.answers[a]++ }

// now returns the time of the transaction: Options.Now, read once per
// attempt, so that all of the attempt's calls agree on which tokens live
// (and the clock, slow on some virtual machines, is read once).
func (s *txState) now() int64 {
	if !s.hasClock {
		s.clock, s.hasClock = s.t.opts.Now().UnixNano(), true
	}
	return s.clock
}

func (s *txState) Mark() int { return len(s.writes) }

func (s *txState) RollbackTo(mark int) {
	clear(s.writes[mark:])
	s.writes = s.writes[:mark]
	if s.byKey != nil {
		s.reindex()
	}
}

// End applies the committed writes' effects and counts the answers, then
// recycles s.
func (s *txState) End(committed bool) {
	t := s.t
	if committed {
		var begun, settled, forgotten uint64
		for i := range s.writes {
			w := &s.writes[i]
			switch w.effect {
			case effectBegun:
				t.ix.add(w.k, w.tok.expires)
				begun++
			case effectSettled:
				t.ix.add(w.k, w.tok.expires)
				settled++
			case effectForgotten:
				forgotten++
				t.opts.Logger.Info("idem: token forgotten", "table", t.name, "key", w.key.String())
			}
		}
		if begun > 0 {
			t.stats.begun.Add(begun)
		}
		if settled > 0 {
			t.stats.settled.Add(settled)
		}
		if forgotten > 0 {
			t.stats.forgotten.Add(forgotten)
		}
	}
	c := &t.stats
	for a, n := range s.answers {
		if n == 0 {
			continue
		}
		switch answer(a) {
		case answerReplay:
			c.replays.Add(n)
		case answerMismatch:
			c.mismatches.Add(n)
		case answerInProgress:
			c.inProgress.Add(n)
		case answerDuplicate:
			c.duplicates.Add(n)
		}
	}
	s.release()
}

func (s *txState) release() {
	clear(s.writes)
	s.writes = s.writes[:0]
	if cap(s.writes) > 64 {
		s.writes = s.inline[:0]
	}
	s.byKey = nil
	s.answers = [numAnswers]uint64{}
	s.hasClock = false
	s.t = nil
	statePool.Put(s)
}
