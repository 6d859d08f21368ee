package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExample runs the shop with an embedded server restarted mid-run, and
// relies on its own check of the stream.
func TestExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Stream: "PURCHASES", Players: 6, Buyers: 8, Purchases: 600, Coins: 400,
		Restart: true, Dir: t.TempDir(), Seed: 7, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	assert.Positive(t, rep.Committed)
	assert.Positive(t, rep.RolledBack, "wallets run dry, so some purchases must roll back")
	assert.Equal(t, int(rep.Committed), rep.Published)
	assert.Equal(t, 1, rep.ServerRestarts)
	t.Logf("%+v", rep)
}
