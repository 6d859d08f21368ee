package effectqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// TestWaitAfterAcked: a consumer that read up to seq 0, while entries 1..3
// were committed and acked by someone else, must wait for the next commit:
// Read(0) returns nothing, so a Wait(0) that returned at once (because the
// head is ahead) would make the loop
//
//	for { items := q.Read(ctx, pos, n); if len(items) == 0 { q.Wait(ctx, pos) } ... }
//
// spin. Wait ends with the context's error when nothing comes, and with nil
// when a new entry commits.
func TestWaitAfterAcked(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), nil)
	defer q.Close()
	ctx := context.Background()
	for range 3 {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { return q.Enqueue(tx, effectqueue.Entry{Kind: "k"}) }))
	}
	require.NoError(t, q.Ack(ctx, 3, 1, 2))
	require.Equal(t, uint64(3), q.Head())
	items, err := q.Read(ctx, 0, 10)
	require.NoError(t, err)
	require.Empty(t, items)

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = q.Wait(short, 0)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "Wait returned with nothing to read")
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)

	// Some acked, one pending above after: Wait returns at once.
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { return q.Enqueue(tx, effectqueue.Entry{Kind: "k"}) }))
	require.NoError(t, q.Wait(ctx, 0))
	require.NoError(t, q.Wait(ctx, 3))
	require.NoError(t, q.Ack(ctx, 4))

	// A waiter blocked on an acked stretch wakes for the next commit.
	woke := make(chan error, 1)
	go func() { woke <- q.Wait(ctx, 1) }()
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { return q.Enqueue(tx, effectqueue.Entry{Kind: "k"}) }))
	select {
	case err := <-woke:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not wake for a commit")
	}
}

// TestWaitHonoursContext: Wait returns the context's error when the
// context has ended, even with entries ready, and ErrClosed after Close.
func TestWaitHonoursContext(t *testing.T) {
	db, q := openQueue(t, t.TempDir(), nil)
	ctx := context.Background()
	require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error { return q.Enqueue(tx, effectqueue.Entry{Kind: "k"}) }))
	done, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, q.Wait(done, 0), context.Canceled, "entries ready, context ended")
	assert.ErrorIs(t, q.Wait(done, 1), context.Canceled, "nothing ready, context ended")

	blocked := make(chan error, 1)
	go func() { blocked <- q.Wait(ctx, 1) }()
	require.NoError(t, q.Close())
	select {
	case err := <-blocked:
		assert.ErrorIs(t, err, effectqueue.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not end at Close")
	}
	assert.ErrorIs(t, q.Wait(ctx, 0), effectqueue.ErrClosed)
}
