package effectqueue

import (
	"bytes"
	"math/rand/v2"
	"strconv"
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

// TestStageInPlace: the record the commit completes in place (key and
// header written into the room Enqueue left before the body) is byte for
// byte the key and record that seqKey and encodeStaged build, for every
// size class of the operation id, sequence numbers of every length, and
// both a generated and a kept (replayed) operation id; a room too small
// falls back to a copy with the same bytes. The seed is printed.
func TestStageInPlace(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	q := &Queue{k: newKeys("zq/")}
	seqs := []uint64{0, 1, 9, 10, 99, 1 << 20, 1<<64 - 1}
	for i := range 200 {
		q.id = strings.Repeat("i", []int{0, 1, 16, 31, 40, 300}[r.IntN(6)])
		e := randomEntry(r)
		seq := seqs[r.IntN(len(seqs))]
		if r.IntN(2) == 0 {
			seq = r.Uint64() >> r.IntN(64)
		}
		tm := r.Int64() - r.Int64()
		kept := ""
		if r.IntN(3) == 0 {
			kept = "op-" + strings.Repeat("x", r.IntN(300))
		}
		body, fields := encodeBody(&e)
		op := kept
		if op == "" {
			op = q.id + "-" + strconv.FormatUint(seq, 10)
		}
		wantKey, wantValue := seqKey(q.k.entry, seq), encodeStaged(op, tm, body, fields)

		buf, room, fields2 := q.encodeEntry(&e, kept)
		require.Equal(t, fields, fields2)
		require.Equal(t, body, buf[room:], "case %d", i)
		key, value := stageInPlace(buf, room, q.k.entry, kept, q.id, seq, tm, fields)
		require.Equal(t, wantKey, key, "case %d", i)
		require.Equal(t, wantValue, value, "case %d", i)
		require.Equal(t, len(key), cap(key), "case %d: the key must not be appendable into the value", i)

		// Too little room: the same bytes, allocated.
		small := append(make([]byte, len(q.k.entry)+8), body...)
		key, value = stageInPlace(small, len(q.k.entry)+8, q.k.entry, kept, q.id, seq, tm, fields)
		require.Equal(t, wantKey, key, "case %d", i)
		require.Equal(t, wantValue, value, "case %d", i)
	}
}
