package idem

import (
	"fmt"

	"github.com/zest-stm/zest/stm"
)

// Link ties the token that key was begun for in this transaction to an
// outside long-running operation named ref (a saga id, a job id). Until
// Settle, Begin and Once answer ErrInProgress, and the token does not
// expire. Link fails with ErrBadRef, ErrNotBegun, ErrFinished, or
// ErrInProgress if the token is already linked.
func (t *Tokens) Link(tx *stm.Tx, key Key, ref string) error {
	s, k, tok, err := t.openToken(tx, key, checkRef(ref), "")
	if err != nil {
		return err
	}
	tok.state = linked
	tok.expires = 0
	tok.set(tok.fingerprint(), ref, "")
	t.tab.Put(tx, k, tok)
	s.wrote(key, k, tok, false, noEffect)
	return nil
}

// Settle stores result as the final result of the outside operation ref
// that key's token is linked to, and starts the token's TTL. Call it from
// the transaction that ends the operation (for a saga, its end hook), so
// the result and the operation's end commit together. It fails with
// ErrNotLinked if the token is not linked to ref (forgotten by an operator,
// or linked to another operation); the caller usually ignores that.
func (t *Tokens) Settle(tx *stm.Tx, key Key, ref string, result []byte) error {
	s, err := t.state(tx)
	if err != nil {
		return err
	}
	k, w, err := t.lookup(s, key)
	if err != nil {
		return err
	}
	if err := checkRef(ref); err != nil {
		return err
	}
	if err := t.checkResult(result); err != nil {
		return err
	}
	var tok token
	ok := false
	if w != nil {
		tok, ok = w.tok, !w.deleted
	} else {
		tok, ok = t.tab.Get(tx, k)
	}
	if !ok || tok.state != linked || tok.ref() != ref {
		return fmt.Errorf("%w: key %s, ref %q", ErrNotLinked, key, ref)
	}
	tok.state = done
	tok.expires = s.now() + int64(t.opts.TTL)
	tok.set(tok.fingerprint(), ref, string(result))
	t.tab.Put(tx, k, tok)
	s.wrote(key, k, tok, false, effectSettled)
	return nil
}

// checkRef refuses an empty ref or one over MaxRefSize.
func checkRef(ref string) error {
	if ref == "" || len(ref) > MaxRefSize {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBadRef, len(ref), MaxRefSize)
	}
	return nil
}
