package effectqueue

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// randomEntry returns an entry whose fields cross every size class of the
// hand encoding (fix, 8, 16 and 32-bit lengths), sometimes empty.
func randomEntry(r *rand.Rand) Entry {
	sizes := []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000}
	str := func() string { return strings.Repeat("é", sizes[r.IntN(len(sizes))]/2) }
	e := Entry{Kind: "k" + str(), Key: str()}
	if n := sizes[r.IntN(len(sizes))]; n > 0 {
		e.Payload = bytes.Repeat([]byte{byte(r.Uint32())}, n)
	}
	if r.IntN(2) == 0 {
		e.Meta = map[string]string{}
		for i := range r.IntN(20) {
			e.Meta[str()+string(rune('a'+i))] = str()
		}
	}
	return e
}

// TestCodecRoundTrip: what the hand encoder writes, both the hand decoder
// and the msgpack library read as the same record; records the library
// writes (older builds stored those) the hand decoder reads the same as the
// library. The seed is printed.
func TestCodecRoundTrip(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range 100 {
		e := randomEntry(r)
		tm := r.Int64() - r.Int64()
		body, fields := encodeBody(&e)
		b := encodeStaged("op-"+strings.Repeat("x", r.IntN(300)), tm, body, fields)
		var lib record
		require.NoError(t, msgpack.Unmarshal(b, &lib), "case %d", i)
		var fast record
		require.True(t, decodeFast(b, &fast), "case %d: the hand decoder refused its own encoding", i)
		require.Equal(t, lib, fast, "case %d", i)
		require.Equal(t, e.Kind, fast.Kind)
		require.Equal(t, e.Key, fast.Key)
		require.Equal(t, tm, fast.Time)
		require.Equal(t, len(e.Payload), len(fast.Payload))
		require.Equal(t, len(e.Meta), len(fast.Meta))

		// A record the library encodes (a dead letter, or an older build).
		lib.Reason, lib.DeadAt = "reason", r.Int64()-r.Int64()
		old, err := encode(&lib)
		require.NoError(t, err)
		var fromLib record
		if decodeFast(old, &fromLib) {
			require.Equal(t, lib, fromLib, "case %d", i)
		}
		got, err := decode(1, old)
		require.NoError(t, err)
		require.Equal(t, lib, got, "case %d", i)
	}
}

// TestDecodeFallsBack: input the hand decoder does not know (an unknown
// field, a truncated record, a nil) goes to the library, which reads what it
// can and reports ErrCorrupt for the rest; nothing panics.
func TestDecodeFallsBack(t *testing.T) {
	type future struct {
		V    uint8  `msgpack:"v"`
		Kind string `msgpack:"k"`
		New  string `msgpack:"z"`
	}
	b, err := msgpack.Marshal(future{V: 1, Kind: "k", New: "later"})
	require.NoError(t, err)
	var r record
	require.False(t, decodeFast(b, &r))
	got, err := decode(1, b)
	require.NoError(t, err)
	require.Equal(t, "k", got.Kind)

	e := Entry{Kind: "k", Key: "key", Payload: []byte("payload"), Meta: map[string]string{"a": "b"}}
	body, fields := encodeBody(&e)
	full := encodeStaged("op", 5, body, fields)
	for i := range full {
		_, _ = decode(1, full[:i]) // must not panic
		var r record
		require.False(t, decodeFast(full[:i], &r), "a truncated record (%d of %d bytes) decoded", i, len(full))
	}
	_, err = decode(1, []byte{0xc0})
	require.ErrorIs(t, err, ErrCorrupt)
}
