package idem

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExpiryIndexOrder(t *testing.T) {
	ix := newExpiryIndex(10)
	// Added out of order: buckets 5, 1, 3 (keys by expiry/10).
	ix.add("e", 55)
	ix.add("a", 10)
	ix.add("b", 19)
	ix.add("c", 30)
	ix.add("d", 31)
	assert.Equal(t, 5, ix.len())
	at, ok := ix.next()
	assert.True(t, ok)
	assert.Equal(t, int64(20), at, "bucket 1 ends at 20")

	_, ks := ix.popDue(19, 10)
	assert.Nil(t, ks, "bucket 1 is not due before its end")
	b, ks := ix.popDue(20, 1)
	assert.Equal(t, int64(1), b)
	assert.Len(t, ks, 1)
	b, ks2 := ix.popDue(20, 10)
	assert.Equal(t, int64(1), b)
	assert.ElementsMatch(t, []string{"a", "b"}, append(ks, ks2...))

	// A failed batch goes back to its bucket.
	ix.putBack(1, []string{"a"})
	b, ks = ix.popDue(100, 10)
	assert.Equal(t, int64(1), b)
	assert.Equal(t, []string{"a"}, ks)

	b, ks = ix.popDue(100, 10)
	assert.Equal(t, int64(3), b)
	slices.Sort(ks)
	assert.Equal(t, []string{"c", "d"}, ks)
	_, ks = ix.popDue(59, 10)
	assert.Nil(t, ks)
	_, ks = ix.popDue(60, 10)
	assert.Equal(t, []string{"e"}, ks)
	_, ok = ix.next()
	assert.False(t, ok)
	assert.Equal(t, 0, ix.len())
}

func TestCodecRoundTrip(t *testing.T) {
	fp := string(make([]byte, FingerprintSize))
	for _, tok := range []token{
		{state: claimed, expires: 1, created: 2},
		{state: done, flags: flagFingerprint, expires: -5, created: 1<<32 - 1},
		{state: linked},
	} {
		if tok.hasFingerprint() {
			tok.set(fp, "ref", "result bytes")
		} else {
			tok.set("", "saga-1", "")
		}
		b, err := codec{}.Marshal(tok)
		assert.NoError(t, err)
		var got token
		assert.NoError(t, codec{}.Unmarshal(b, &got))
		assert.Equal(t, tok, got)
	}
	for _, bad := range [][]byte{nil, {2}, make([]byte, headerSize), append([]byte{1, 9}, make([]byte, headerSize)...)} {
		var got token
		assert.ErrorIs(t, codec{}.Unmarshal(bad, &got), errCorrupt)
	}
	// A reference longer than the data is corrupt.
	b, _ := codec{}.Marshal(token{state: linked, refLen: 10, data: "short"})
	var got token
	assert.ErrorIs(t, codec{}.Unmarshal(b, &got), errCorrupt)
}

// TestExpiryIndexChunks: a bucket of many keys, popped in batches smaller
// and larger than its chunks while keys keep arriving, gives every key
// exactly once, and a batch handed out is never overwritten by later adds.
func TestExpiryIndexChunks(t *testing.T) {
	ix := newExpiryIndex(10)
	want := map[string]bool{}
	next := 0
	add := func(n int) {
		for range n {
			k := fmt.Sprint("k", next)
			next++
			want[k] = true
			ix.add(k, 15) // bucket 1
		}
	}
	add(1000)
	got := map[string]bool{}
	var batches [][]string
	var copies [][]string
	for i, max := range []int{256, 100, 600, 1, 300, 5000} {
		_, ks := ix.popDue(20, max)
		require.LessOrEqual(t, len(ks), max)
		require.NotEmpty(t, ks, "batch %d", i)
		batches = append(batches, ks)
		copies = append(copies, slices.Clone(ks))
		for _, k := range ks {
			require.False(t, got[k], "%s popped twice", k)
			got[k] = true
		}
		add(37) // arrivals between batches
	}
	for {
		_, ks := ix.popDue(20, 256)
		if len(ks) == 0 {
			break
		}
		for _, k := range ks {
			require.False(t, got[k], "%s popped twice", k)
			got[k] = true
		}
	}
	assert.Equal(t, want, got)
	assert.Equal(t, 0, ix.len())
	for i := range batches {
		assert.Equal(t, copies[i], batches[i], "batch %d changed after it was handed out", i)
	}
}
