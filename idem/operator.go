package idem

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zest-stm/zest/stm"
)

// Info describes one token for operators.
type Info struct {
	Key Key `json:"key"`
	// State is "claimed" (begun, committed without a result), "done" or
	// "linked" (tied to an outside operation still running).
	State string `json:"state"`
	// Fingerprint is the hex fingerprint the token was begun with, if any.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Created is when the token was begun, to the second.
	Created time.Time `json:"created"`
	// Expires is when the token expires; zero while linked.
	Expires time.Time `json:"expires,omitzero"`
	// ResultSize is the stored result's size in bytes.
	ResultSize int `json:"result_size"`
	// Ref is the outside operation a linked (or settled) token is tied to.
	Ref string `json:"ref,omitempty"`
}

func (t *Tokens) info(key Key, tok token) Info {
	in := Info{
		Key:        key,
		State:      tok.state.String(),
		Created:    time.Unix(int64(tok.created), 0).UTC(),
		ResultSize: len(tok.result()),
		Ref:        tok.ref(),
	}
	if tok.hasFingerprint() {
		in.Fingerprint = fmt.Sprintf("%x", tok.fingerprint())
	}
	if tok.expires != 0 {
		in.Expires = time.Unix(0, tok.expires).UTC()
	}
	return in
}

// Lookup returns the live token of key, or ErrNotFound. It runs its own
// read-only transaction.
func (t *Tokens) Lookup(ctx context.Context, key Key) (Info, error) {
	k, err := key.encode(t.opts.MaxKeySize)
	if err != nil {
		return Info{}, err
	}
	tok, err := stm.RunValue(ctx, t.db, func(tx *stm.Tx) (token, error) {
		tok, ok := t.get(tx, k, t.opts.Now().UnixNano())
		if !ok {
			return token{}, ErrNotFound
		}
		return tok, nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Info{}, fmt.Errorf("%w: key %s", ErrNotFound, key)
		}
		return Info{}, ctxErr(ctx, err, "lookup "+key.String())
	}
	return t.info(key, tok), nil
}

// Discard is Forget in its own transaction, for operators: it removes key's
// token and reports whether there was one. On cancellation it returns
// ctx.Err() and the token is unchanged.
func (t *Tokens) Discard(ctx context.Context, key Key) (bool, error) {
	found, err := stm.RunValue(ctx, t.db, func(tx *stm.Tx) (bool, error) {
		return t.Forget(tx, key)
	})
	if err != nil && !errors.Is(err, ErrBadKey) {
		return false, ctxErr(ctx, err, "discard "+key.String())
	}
	return found, err
}

// ctxErr returns ctx.Err() itself when err is the context ending, and err
// wrapped with what was being done otherwise.
func ctxErr(ctx context.Context, err error, doing string) error {
	if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
		return cerr
	}
	return fmt.Errorf("idem: %s: %w", doing, err)
}
