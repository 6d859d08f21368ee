package idem

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// Tokens is a table of idempotency tokens on one stm.DB.
//
// A Tokens is safe for concurrent use. Its transactional methods (Begin,
// Finish, Once, Forget, Link, Settle) take the *stm.Tx of the body they are
// called from and follow its rules; Lookup, Discard, Expire and Sweep run
// their own transactions and must not be called from a body.
type Tokens struct {
	db      *stm.DB
	name    string
	tab     *table.Table[string, token]
	durable bool
	opts    Options
	ix      *expiryIndex
	stats   counters
}

type counters struct {
	begun, replays, mismatches, inProgress, duplicates atomic.Uint64
	settled, expired, forgotten                        atomic.Uint64
}

// New creates the token table called name on db.
//
// If db has a durable log (effectqueue.Open was called on it before New),
// the table is durable: each token is written in the same atomic Badger
// write as the transaction's other durable tables and queue entries, and
// the tokens on disk are loaded. Otherwise the tokens live in memory only.
// The name is registered on db like a table's and must be unique there.
func New(db *stm.DB, name string, opts *Options) (*Tokens, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Tokens{db: db, name: name, opts: o, ix: newExpiryIndex(o.Granularity)}
	t.tab, err = table.NewDurable[string, token](db, name, &table.DurableOptions[token]{Codec: codec{}})
	switch {
	case err == nil:
		t.durable = true
	case errors.Is(err, table.ErrNoStore):
		t.tab, err = table.New[string, token](db, name)
		if err != nil {
			return nil, fmt.Errorf("idem: %q: %w", name, err)
		}
	default:
		return nil, fmt.Errorf("idem: %q: %w", name, err)
	}
	if t.durable && t.tab.Loaded().Records > 0 {
		if err := t.rebuildIndex(); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// rebuildIndex indexes the tokens loaded from disk: the one full pass, at
// open, that the durable table's own load already paid for.
func (t *Tokens) rebuildIndex() error {
	type entry struct {
		key     string
		expires int64
	}
	var all []entry
	err := t.db.Run(context.Background(), func(tx *stm.Tx) error {
		all = all[:0]
		t.tab.Scan(tx, func(k string, v token) bool {
			if v.state != linked {
				all = append(all, entry{k, v.expires})
			}
			return true
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("idem: %q: index the loaded tokens: %w", t.name, err)
	}
	for _, e := range all {
		t.ix.add(e.key, e.expires)
	}
	t.opts.Logger.Info("idem: tokens loaded", "table", t.name, "tokens", t.tab.Loaded().Records,
		"indexed", len(all), "took", t.tab.Loaded().Duration)
	return nil
}

// Name returns the name the table was registered with.
func (t *Tokens) Name() string { return t.name }

// Durable reports whether the tokens are persisted with the DB's durable
// log.
func (t *Tokens) Durable() bool { return t.durable }

// DB returns the database the tokens live on.
func (t *Tokens) DB() *stm.DB { return t.db }

// lookup resolves key for a call in a transaction that holds s: its table
// key, and the transaction's latest write of it (nil if it wrote none). A
// key the transaction did not write is validated and encoded.
func (t *Tokens) lookup(s *txState, key Key) (string, *tokenWrite, error) {
	if w := s.find(key); w != nil {
		return w.k, w, nil
	}
	k, err := key.encode(t.opts.MaxKeySize)
	return k, nil, err
}

// read returns k's token as tx sees it if it is live at now. When the
// transaction wrote the token (w), that write is the answer and the table
// is not read again.
func (t *Tokens) read(tx *stm.Tx, k string, w *tokenWrite, now int64) (token, bool) {
	if w != nil {
		if w.deleted || !w.tok.live(now) {
			return token{}, false
		}
		return w.tok, true
	}
	return t.get(tx, k, now)
}

// get returns k's token if it is live at now.
func (t *Tokens) get(tx *stm.Tx, k string, now int64) (token, bool) {
	tok, ok := t.tab.Get(tx, k)
	if !ok || !tok.live(now) {
		return token{}, false
	}
	return tok, true
}

// Begin claims key for the operation the transaction performs, with the
// fingerprint of its parameters (nil, or FingerprintSize bytes; see
// Fingerprint).
//
//   - First time (or the previous token expired): the token is created in
//     tx; Begin returns replay == false and the body does the work, then calls
//     Finish with the result. If the body fails, the claim rolls back with
//     everything else and a retry runs again.
//   - The operation was done: replay == true and result is its stored result
//     (nil if none was stored); the body must not do the work again.
//   - The key was begun with another fingerprint: ErrMismatch.
//   - The token is linked to an outside operation still running:
//     ErrInProgress.
//
// Two transactions that begin the same key concurrently conflict: one
// commits and the other reruns and replays its result.
func (t *Tokens) Begin(tx *stm.Tx, key Key, fingerprint []byte) (result []byte, replay bool, err error) {
	s, err := t.state(tx)
	if err != nil {
		return nil, false, err
	}
	k, w, err := t.lookup(s, key)
	if err != nil {
		return nil, false, err
	}
	if err := checkFingerprint(fingerprint); err != nil {
		return nil, false, err
	}
	now := s.now()
	tok, ok := t.read(tx, k, w, now)
	if !ok {
		tok = newToken(claimed, fingerprint, now, t.opts.TTL)
		t.tab.Put(tx, k, tok)
		s.wrote(key, k, tok, false, effectBegun)
		return nil, false, nil
	}
	if !tok.sameFingerprint(fingerprint) {
		s.count(answerMismatch)
		return nil, false, fmt.Errorf("%w: key %s", ErrMismatch, key)
	}
	if tok.state == linked {
		s.count(answerInProgress)
		return nil, false, fmt.Errorf("%w: key %s is linked to %q", ErrInProgress, key, tok.ref())
	}
	s.count(answerReplay)
	if r := tok.result(); r != "" {
		result = []byte(r)
	}
	return result, true, nil
}

// Finish stores result as the outcome of the operation key was begun for in
// this transaction (or in an earlier one that committed without Finish).
// A replay of the key returns result. Finish fails with ErrResultTooLarge
// for a result over Options.MaxResultSize, ErrNotBegun if the key has no
// live token, ErrFinished if it already holds a result, and ErrInProgress if
// it is linked (use Settle). On error nothing is stored.
func (t *Tokens) Finish(tx *stm.Tx, key Key, result []byte) error {
	s, k, tok, err := t.openToken(tx, key, t.checkResult(result), "; settle it instead")
	if err != nil {
		return err
	}
	tok.state = done
	tok.setResult(result)
	t.tab.Put(tx, k, tok)
	s.wrote(key, k, tok, false, noEffect)
	return nil
}

// openToken reads key's token for Finish and Link, which complete a begun
// token: it fails unless the token was begun and is neither finished nor
// linked (linkedHint ends that error's text). argErr, the check of the
// caller's own argument, is returned after the errors of tx and key.
func (t *Tokens) openToken(tx *stm.Tx, key Key, argErr error, linkedHint string) (*txState, string, token, error) {
	s, err := t.state(tx)
	if err != nil {
		return nil, "", token{}, err
	}
	k, w, err := t.lookup(s, key)
	if err != nil {
		return nil, "", token{}, err
	}
	if argErr != nil {
		return nil, "", token{}, argErr
	}
	tok, ok := t.read(tx, k, w, s.now())
	switch {
	case !ok:
		return nil, "", token{}, fmt.Errorf("%w: key %s", ErrNotBegun, key)
	case tok.state == done:
		return nil, "", token{}, fmt.Errorf("%w: key %s", ErrFinished, key)
	case tok.state == linked:
		return nil, "", token{}, fmt.Errorf("%w: key %s is linked to %q%s", ErrInProgress, key, tok.ref(), linkedHint)
	}
	return s, k, tok, nil
}

// checkResult refuses a result over Options.MaxResultSize.
func (t *Tokens) checkResult(result []byte) error {
	if len(result) > t.opts.MaxResultSize {
		return fmt.Errorf("%w: %d bytes, over MaxResultSize %d", ErrResultTooLarge, len(result), t.opts.MaxResultSize)
	}
	return nil
}

// Once is the plain rule "this operation happens once": the first call for
// key creates a finished token with no result and returns nil; every later
// call, while the token lives, returns ErrDuplicate (ErrInProgress if the
// token is linked). It rolls back with the transaction like Begin.
func (t *Tokens) Once(tx *stm.Tx, key Key) error {
	s, err := t.state(tx)
	if err != nil {
		return err
	}
	k, w, err := t.lookup(s, key)
	if err != nil {
		return err
	}
	now := s.now()
	if tok, ok := t.read(tx, k, w, now); ok {
		if tok.state == linked {
			s.count(answerInProgress)
			return fmt.Errorf("%w: key %s is linked to %q", ErrInProgress, key, tok.ref())
		}
		s.count(answerDuplicate)
		return fmt.Errorf("%w: key %s", ErrDuplicate, key)
	}
	tok := newToken(done, nil, now, t.opts.TTL)
	t.tab.Put(tx, k, tok)
	s.wrote(key, k, tok, false, effectBegun)
	return nil
}

// Forget removes key's token, live, expired or linked, and reports whether
// there was one. The next Begin of key runs the operation again. It is for
// operators (see Discard for the form outside a transaction).
func (t *Tokens) Forget(tx *stm.Tx, key Key) (bool, error) {
	s, err := t.state(tx)
	if err != nil {
		return false, err
	}
	k, _, err := t.lookup(s, key)
	if err != nil {
		return false, err
	}
	if !t.tab.Delete(tx, k) {
		return false, nil
	}
	s.wrote(key, k, token{}, true, effectForgotten)
	return true, nil
}
