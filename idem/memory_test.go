package idem_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/stm"
)

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryPerToken measures the heap held by live tokens: 200,000 tokens
// begun and finished with a 16-byte result, keys of 19 bytes encoded ("u",
// "order-NNNNNNN", "pay"), with and without a fingerprint. The budget is 200
// bytes per token besides the key, the result and the fingerprint (32
// bytes, when given). It also reports what a token leaves behind once swept.
// The figure moves with how full the table's slot array is at n.
//
// IDEM_MEMORY_TOKENS sets another count.
func TestMemoryPerToken(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures the heap with 200,000 tokens; the race detector changes what it measures and takes minutes")
	}
	n := 200_000
	if s := os.Getenv("IDEM_MEMORY_TOKENS"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err)
	}
	for _, withFP := range []bool{false, true} {
		t.Run(fmt.Sprintf("fingerprint=%v", withFP), func(t *testing.T) { measureTokens(t, n, withFP) })
	}
}

func measureTokens(t *testing.T, n int, withFP bool) {
	ctx := context.Background()
	clk := newClock()
	db, tokens := openMem(t, &idem.Options{Now: clk.Now})
	var fp []byte
	if withFP {
		fp = idem.Fingerprint([]byte("parameters"))
	}
	result := []byte("receipt-01234567")
	keyOf := func(i int) idem.Key { return idem.Key{Scope: "u", ID: fmt.Sprintf("order-%07d", i), Scene: "pay"} }
	keySize := len("u") + len(keyOf(0).ID) + len("pay") + 2

	before := heapAlloc()
	for i := 0; i < n; i += 500 {
		require.NoError(t, db.Run(ctx, func(tx *stm.Tx) error {
			for j := i; j < min(i+500, n); j++ {
				k := keyOf(j)
				if _, _, err := tokens.Begin(tx, k, fp); err != nil {
					return err
				}
				if err := tokens.Finish(tx, k, result); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	live := heapAlloc()
	per := float64(live-before) / float64(n)
	overhead := per - float64(keySize+len(result))
	t.Logf("%d live tokens: %.1f bytes each = %d key + %d result + %d fingerprint + %.1f overhead",
		n, per, keySize, len(result), len(fp), overhead-float64(len(fp)))
	assert.LessOrEqual(t, overhead-float64(len(fp)), 200.0, "bytes per live token besides key, result and fingerprint")

	clk.Advance(25 * time.Hour)
	swept, err := tokens.Expire(ctx)
	require.NoError(t, err)
	require.Equal(t, n, swept)
	after := heapAlloc()
	t.Logf("after sweeping them: %.1f bytes per swept token stay",
		float64(int64(after)-int64(before))/float64(n))
	runtime.KeepAlive(tokens)
	runtime.KeepAlive(db)
}
