package idem

import (
	"context"

	"github.com/zest-stm/zest/stm"
)

// Count returns the number of tokens stored, expired or not.
func Count(t *Tokens) int {
	n, err := stm.RunValue(context.Background(), t.db, func(tx *stm.Tx) (int, error) {
		return t.tab.Len(tx), nil
	})
	if err != nil {
		panic(err)
	}
	return n
}

// Stored reports whether key has a token stored, expired or not.
func Stored(t *Tokens, key Key) bool {
	k, err := key.encode(t.opts.MaxKeySize)
	if err != nil {
		panic(err)
	}
	ok, err := stm.RunValue(context.Background(), t.db, func(tx *stm.Tx) (bool, error) {
		return t.tab.Has(tx, k), nil
	})
	if err != nil {
		panic(err)
	}
	return ok
}
