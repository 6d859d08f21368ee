package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDemo runs the demo twice on one data directory: the first run charges
// each order once despite 40 concurrent duplicates; the second, after a
// restart, replays every payment from the durable tokens and charges
// nothing.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rep, err := Demo(context.Background(), dir, 40, logger)
	require.NoError(t, err)
	assert.False(t, rep.Restarted)
	assert.Equal(t, int64(42), rep.Charged)
	assert.Equal(t, 43, rep.Requests)
	assert.Equal(t, 41, rep.Statuses[http.StatusCreated])
	assert.Equal(t, 1, rep.Statuses[http.StatusUnprocessableEntity])
	assert.Equal(t, 1, rep.Statuses[http.StatusConflict])
	assert.Equal(t, 39, rep.Replayed)
	assert.Len(t, rep.Receipts, 2)

	rep, err = Demo(context.Background(), dir, 40, logger)
	require.NoError(t, err)
	assert.True(t, rep.Restarted)
	assert.Zero(t, rep.Charged)
	assert.Equal(t, 42, rep.Replayed, "every request after the restart is a replay (the 422 is not stored)")
	assert.Equal(t, 1, rep.Statuses[http.StatusConflict], "the second payment is refused again (its 409 was stored)")
}
