package effectqueue_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// TestEnqueueWrongDB: a Tx of another DB passed to Enqueue gets an error
// wrapping stm.ErrWrongDB and writes nothing, in either queue: both heads
// and both contents are what they were, and numbering goes on from there.
// (Before the check, the entry was staged under the other DB's sequencer
// and written by the other DB's queue, whose head then went backwards.)
func TestEnqueueWrongDB(t *testing.T) {
	ctx := context.Background()
	dbA, qa := openQueue(t, t.TempDir(), nil)
	defer qa.Close()
	dbB, qb := openQueue(t, t.TempDir(), nil)
	defer qb.Close()
	// A has 5 entries, B has 2: A's numbering is ahead.
	for i := range 5 {
		require.NoError(t, dbA.Run(ctx, func(tx *stm.Tx) error {
			return qa.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("a" + strconv.Itoa(i))})
		}))
	}
	for i := range 2 {
		require.NoError(t, dbB.Run(ctx, func(tx *stm.Tx) error {
			return qb.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("b" + strconv.Itoa(i))})
		}))
	}
	beforeA, beforeB := payloads(readAll(t, qa)), payloads(readAll(t, qb))
	headA, headB := qa.Head(), qb.Head()

	// B's transaction enqueues into A's queue: refused. The body goes on
	// and commits its own entry; a body that returns the error rolls back.
	err := dbB.Run(ctx, func(tx *stm.Tx) error {
		err := qa.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("wrong")})
		assert.ErrorIs(t, err, stm.ErrWrongDB)
		return qb.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("b-own")})
	})
	require.NoError(t, err)
	err = dbA.Run(ctx, func(tx *stm.Tx) error {
		return qb.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("wrong")})
	})
	require.True(t, errors.Is(err, stm.ErrWrongDB), "%v", err)

	assert.Equal(t, headA, qa.Head(), "A's head moved")
	assert.Equal(t, headB+1, qb.Head(), "B's head: only its own entry")
	assert.Equal(t, beforeA, payloads(readAll(t, qa)))
	assert.Equal(t, append(beforeB, "b-own"), payloads(readAll(t, qb)))

	// Numbering of both goes on without a gap or a reuse.
	require.NoError(t, dbA.Run(ctx, func(tx *stm.Tx) error {
		return qa.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("a-next")})
	}))
	items := readAll(t, qa)
	for i, it := range items {
		assert.Equal(t, uint64(i+1), it.Seq)
	}
	assert.Equal(t, headA+1, qa.Head())
}
