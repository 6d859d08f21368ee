package effectqueue_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// recordHandler is a slog.Handler that keeps the records at Error level and
// signals the first.
type recordHandler struct {
	errs  chan slog.Record
	attrs []slog.Attr
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		select {
		case h.errs <- r.Clone():
		default:
		}
	}
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// TestAsyncWriteFailureReported: in Async mode Run returns before the
// write, so a write that fails afterwards cannot fail those Runs. It must
// still be reported, never only lost:
//   - Stats().AsyncLost counts exactly the commits Run returned nil for
//     that are not on disk (checked after a reopen), WriteErrors is 1;
//   - an Error log line says so, with the count;
//   - the next Run fails with stm.ErrStopped, the cause inside;
//   - Close returns the write error.
func TestAsyncWriteFailureReported(t *testing.T) {
	dir := t.TempDir()
	bdb, err := badger.Open(badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).WithMemTableSize(16 << 20))
	require.NoError(t, err)
	h := &recordHandler{errs: make(chan slog.Record, 4)}
	db, err := stm.Open(&stm.Options{Logger: slog.New(&recordHandler{errs: make(chan slog.Record, 4)})})
	require.NoError(t, err)
	q, err := effectqueue.Open(db, &effectqueue.Options{Badger: bdb, Durability: effectqueue.Async, Logger: slog.New(h)})
	require.NoError(t, err)
	ctx := context.Background()
	commit := func(i int) error {
		return db.Run(ctx, func(tx *stm.Tx) error {
			return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte(strconv.Itoa(i))})
		})
	}
	for i := range 5 {
		require.NoError(t, commit(i))
	}
	require.NoError(t, q.Wait(ctx, 4)) // the first five are on disk
	require.NoError(t, bdb.Close())    // the fault

	// Commit until the failure stops the DB; each nil is a promise the
	// disk will not keep.
	returnedNil := 0
	var stopErr error
	deadline := time.Now().Add(30 * time.Second)
	for i := 5; time.Now().Before(deadline); i++ {
		if err := commit(i); err != nil {
			stopErr = err
			break
		}
		returnedNil++
	}
	require.Error(t, stopErr, "the DB never stopped")
	assert.True(t, errors.Is(stopErr, stm.ErrStopped), "%v", stopErr)
	assert.ErrorContains(t, stopErr, "asynchronous commits that Run had returned nil for are not on disk")
	t.Logf("after the fault: %d commits returned nil, then: %v", returnedNil, stopErr)

	var rec slog.Record
	select {
	case rec = <-h.errs:
	case <-time.After(10 * time.Second):
		t.Fatal("no Error log line")
	}
	assert.Contains(t, rec.Message, "asynchronous write failed")
	lostLogged := int64(-1)
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "lost_commits" {
			lostLogged = a.Value.Int64()
		}
		return true
	})

	st := q.Stats()
	assert.Equal(t, uint64(1), st.WriteErrors)
	assert.Equal(t, uint64(returnedNil), st.AsyncLost, "every commit Run returned nil for after the fault is lost")
	assert.Equal(t, int64(returnedNil), lostLogged)
	assert.ErrorIs(t, q.Err(), stm.ErrStopped)
	closeErr := q.Close()
	assert.Error(t, closeErr, "Close must return the write error")
	assert.ErrorIs(t, closeErr, stm.ErrStopped)

	// On disk: the five written before the fault, nothing else.
	_, q = openQueue(t, dir, nil)
	defer q.Close()
	assert.Equal(t, []string{"0", "1", "2", "3", "4"}, payloads(readAll(t, q)))
}
