package effectqueue

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Entry is an operation for another system, written inside a transaction.
type Entry struct {
	// Kind says which sink operation this is (e.g. "s3.put"). Required.
	Kind string
	// Key is the ordering key: entries with the same Key are delivered in
	// sequence order, one at a time (e.g. "bucket/object").
	Key string
	// Payload is the operation's data.
	Payload []byte
	// Meta holds small string attributes (content type, user metadata).
	Meta map[string]string
}

// Item is a committed entry as consumers read it.
type Item struct {
	Entry
	// Seq is the entry's sequence number: gap-free, increasing in commit
	// order, never reused.
	Seq uint64
	// OpID is a stable operation id, unique across queues, kept when a
	// dead letter is replayed; sinks use it to make delivery idempotent.
	OpID string
	// Committed is the commit time of the entry's transaction.
	Committed time.Time
}

// DeadLetter is an entry set aside by a consumer, with the reason.
type DeadLetter struct {
	Item
	Reason string
	At     time.Time
}

// formatVersion is the version of the stored encoding.
const formatVersion = 1

// record is the stored form of an entry (and, with Reason, of a dead
// letter). Short field names keep entries small; new fields must be
// optional so older records stay readable.
type record struct {
	V       uint8             `msgpack:"v"`
	OpID    string            `msgpack:"o"`
	Kind    string            `msgpack:"k"`
	Key     string            `msgpack:"y,omitempty"`
	Payload []byte            `msgpack:"p,omitempty"`
	Meta    map[string]string `msgpack:"m,omitempty"`
	Time    int64             `msgpack:"t"`
	Reason  string            `msgpack:"r,omitempty"`
	DeadAt  int64             `msgpack:"d,omitempty"`
}

func encode(r *record) ([]byte, error) {
	r.V = formatVersion
	return msgpack.Marshal(r)
}

// encodeBody encodes the fields of e that do not depend on the commit as
// msgpack map pairs (kind, key, payload, meta), and returns them with their
// number. Enqueue calls it in the body, so that the commit sequencer only
// adds the header (see encodeStaged).
func encodeBody(e *Entry) ([]byte, int) {
	return appendBody(make([]byte, 0, bodySize(e)), e)
}

// encodeBodyRoom is encodeBody with room bytes left in front of the body,
// in the same allocation, for the record's key and header: the commit then
// completes the record in place (see stageInPlace) instead of allocating
// and copying under the commit sequencer. The body is buf[room:].
func encodeBodyRoom(e *Entry, room int) (buf []byte, fields int) {
	return appendBody(make([]byte, room, room+bodySize(e)), e)
}

func bodySize(e *Entry) int {
	size := len(e.Kind) + len(e.Key) + len(e.Payload) + 32
	for k, v := range e.Meta {
		size += len(k) + len(v) + 10
	}
	return size
}

func appendBody(b []byte, e *Entry) ([]byte, int) {
	n := 1
	b = appendStr(b, "k")
	b = appendStr(b, e.Kind)
	if e.Key != "" {
		n++
		b = appendStr(b, "y")
		b = appendStr(b, e.Key)
	}
	if len(e.Payload) > 0 {
		n++
		b = appendStr(b, "p")
		b = appendBin(b, e.Payload)
	}
	if len(e.Meta) > 0 {
		n++
		b = appendStr(b, "m")
		b = appendMapLen(b, len(e.Meta))
		keys := make([]string, 0, len(e.Meta))
		for k := range e.Meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendStr(b, k)
			b = appendStr(b, e.Meta[k])
		}
	}
	return b, n
}

// headerRoom bounds the header that encodeStaged writes before the body
// for an operation id of opIDLen bytes: the map header (the fields are
// fewer than 16), "v" and the version, "o" and the id's string header, "t"
// and the time.
func headerRoom(opIDLen int) int { return 1 + 2 + 2 + 2 + 5 + opIDLen + 2 + 9 }

// appendHeader appends what encodeStaged writes before the body. The
// operation id is opID, or, if opID is empty, id + "-" + seq.
func appendHeader(b []byte, opID, id string, seq uint64, t int64, fields int) []byte {
	b = appendMapLen(b, 3+fields)
	b = appendStr(b, "v")
	b = append(b, 0xcc, formatVersion) // uint8
	b = appendStr(b, "o")
	if opID != "" {
		b = appendStr(b, opID)
	} else {
		b = appendStrHeader(b, len(id)+1+decimalLen(seq))
		b = append(b, id...)
		b = append(b, '-')
		b = strconv.AppendUint(b, seq, 10)
	}
	b = appendStr(b, "t")
	return appendInt64(b, t)
}

// decimalLen is the number of decimal digits of v.
func decimalLen(v uint64) int {
	n := 1
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}

// encodeStaged completes a record: a map of the version, operation id and
// commit time, followed by the pre-encoded body pairs. The result decodes
// like any record.
func encodeStaged(opID string, t int64, body []byte, fields int) []byte {
	b := make([]byte, 0, len(body)+len(opID)+32)
	b = appendHeader(b, opID, "", 0, t, fields)
	return append(b, body...)
}

// stageInPlace completes a record whose body encodeBodyRoom wrote after
// room bytes: the key (keyPrefix and seq) goes at the start of buf and the
// header (as appendHeader writes it) right before the body, so the value
// is the header and body, contiguous, with no copy of the body. If they do
// not fit (they always do for the room Enqueue leaves), it allocates.
func stageInPlace(buf []byte, room int, keyPrefix []byte, opID, id string, seq uint64, t int64, fields int) (key, value []byte) {
	var hb [96]byte
	h := appendHeader(hb[:0], opID, id, seq, t, fields)
	kl := len(keyPrefix) + 8
	start := room - len(h)
	if start < kl {
		if opID == "" {
			opID = id + "-" + strconv.FormatUint(seq, 10)
		}
		return seqKey(keyPrefix, seq), encodeStaged(opID, t, buf[room:], fields)
	}
	key = buf[:kl:kl]
	copy(key, keyPrefix)
	binary.BigEndian.PutUint64(key[len(keyPrefix):], seq)
	copy(buf[start:room], h)
	return key, buf[start:]
}

func decode(seq uint64, b []byte) (record, error) {
	var r record
	if !decodeFast(b, &r) {
		r = record{}
		if err := msgpack.Unmarshal(b, &r); err != nil {
			return r, fmt.Errorf("%w: seq %d: %v", ErrCorrupt, seq, err)
		}
	}
	if r.V == 0 || r.V > formatVersion {
		return r, fmt.Errorf("%w: seq %d: format version %d, this build reads up to %d", ErrCorrupt, seq, r.V, formatVersion)
	}
	return r, nil
}

func (r *record) item(seq uint64) Item {
	return Item{
		Entry:     Entry{Kind: r.Kind, Key: r.Key, Payload: r.Payload, Meta: r.Meta},
		Seq:       seq,
		OpID:      r.OpID,
		Committed: time.Unix(0, r.Time),
	}
}

// stagedOverhead bounds what encodeStaged and the key add to an entry's
// body: the map header, version, operation id, commit time and seq key.
const stagedOverhead = 64

// keys of the queue, under the prefix:
//
//	e/<seq>   pending entries
//	d/<seq>   dead letters
//	r/<seq>   retry state of a pending entry (see RetryState)
//	m/next    the next sequence number to assign
//	m/cursor  every entry below it is acked or dead-lettered
//	m/id      the queue's id, the prefix of its operation ids
//	c/<name>  a consumer's state (SetConsumerState)
type keys struct {
	root               []byte // Options.Prefix: every key of the DB lives under it
	entry, dead, retry []byte
	next, cursor, id   []byte
	consumer           []byte
}

func newKeys(prefix string) keys {
	p := []byte(prefix)
	return keys{
		root:     p,
		entry:    append(append([]byte{}, p...), "e/"...),
		dead:     append(append([]byte{}, p...), "d/"...),
		retry:    append(append([]byte{}, p...), "r/"...),
		next:     append(append([]byte{}, p...), "m/next"...),
		cursor:   append(append([]byte{}, p...), "m/cursor"...),
		id:       append(append([]byte{}, p...), "m/id"...),
		consumer: append(append([]byte{}, p...), "c/"...),
	}
}

func seqKey(prefix []byte, seq uint64) []byte {
	k := make([]byte, len(prefix), len(prefix)+8)
	copy(k, prefix)
	return binary.BigEndian.AppendUint64(k, seq)
}

func seqOf(prefix, key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(prefix):])
}

func u64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func u64b(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
