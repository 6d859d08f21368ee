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
