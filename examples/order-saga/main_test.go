package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRun runs the example (both services real, on 127.0.0.1): some sagas
// compensate, one is stuck and resolved, and run's own check compares the
// services and the local table with every outcome.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	cfg := Config{N: 16, PriceFailEvery: 3, OutOfStockEvery: 4, Stuck: 2, Dir: t.TempDir(), Out: &out,
		InitialPrice: 100, InitialStock: 5, ResolveWho: "test", AdminAddr: "127.0.0.1:0"}
	err := run(context.Background(), cfg)
	t.Log(out.String())
	require.NoError(t, err)
	s := out.String()
	require.Contains(t, s, "already exists", "a second start is refused")
	require.Equal(t, 2, strings.Count(s, "STUCK "), "two sagas got stuck")
	require.Equal(t, 2, strings.Count(s, "now compensated"), "and were resolved")
	require.Contains(t, s, "checked: 12 done and 4 compensated")
	require.Contains(t, s, "admin page http://127.0.0.1:", "the admin page and metrics were served during the run")
}
