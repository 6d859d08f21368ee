package idem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// state is where a token is in its life.
type state uint8

const (
	// claimed: Begin created the token in a transaction that committed
	// without calling Finish. The operation ran; its result is empty.
	claimed state = iota + 1
	// done: Finish, Once or Settle stored the final result.
	done
	// linked: tied to an outside operation (Link) until Settle.
	linked
)

func (s state) String() string {
	switch s {
	case claimed:
		return "claimed"
	case done:
		return "done"
	case linked:
		return "linked"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

const flagFingerprint = 1

// token is one key's record. It is kept to 32 bytes (one size class)
// because a live token costs this much besides its key and result: the
// fingerprint, reference and result share one string.
type token struct {
	// expires is the expiry time in Unix nanoseconds; 0 while linked.
	expires int64
	// data is the fingerprint (FingerprintSize bytes, if flagFingerprint),
	// then the reference (refLen bytes), then the result.
	data string
	// created is the Unix second the token was begun (informational).
	created uint32
	refLen  uint16
	state   state
	flags   uint8
}

func (t *token) hasFingerprint() bool { return t.flags&flagFingerprint != 0 }

func (t *token) fingerprint() string {
	if !t.hasFingerprint() {
		return ""
	}
	return t.data[:FingerprintSize]
}

func (t *token) fpLen() int {
	if t.hasFingerprint() {
		return FingerprintSize
	}
	return 0
}

func (t *token) ref() string { return t.data[t.fpLen() : t.fpLen()+int(t.refLen)] }

func (t *token) result() string { return t.data[t.fpLen()+int(t.refLen):] }

// live reports whether the token has not expired at now.
func (t *token) live(now int64) bool { return t.expires == 0 || now < t.expires }

// sameFingerprint reports whether fp (nil or FingerprintSize bytes) is the
// fingerprint the token was begun with.
func (t *token) sameFingerprint(fp []byte) bool {
	if t.hasFingerprint() != (fp != nil) {
		return false
	}
	return t.fingerprint() == string(fp)
}

// set rebuilds data from its parts.
func (t *token) set(fp, ref, result string) {
	t.data = fp + ref + result
	t.refLen = uint16(len(ref))
}

// setResult replaces the reference and result with result, keeping the
// fingerprint.
func (t *token) setResult(result []byte) {
	if t.hasFingerprint() {
		t.data = t.fingerprint() + string(result)
	} else {
		t.data = string(result)
	}
	t.refLen = 0
}

// newToken returns a token begun at now (Unix ns) that expires ttl later.
func newToken(st state, fp []byte, now int64, ttl time.Duration) token {
	t := token{state: st, created: unixSeconds(now), expires: now + int64(ttl)}
	if fp != nil {
		t.flags |= flagFingerprint
	}
	t.data = string(fp)
	return t
}

func unixSeconds(ns int64) uint32 {
	s := ns / int64(time.Second)
	if s < 0 {
		return 0
	}
	if s > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(s)
}

// codec encodes tokens in a durable table: a version byte, then the fixed
// fields, then data. It is smaller and faster than msgpack's field maps, and
// the version byte leaves room to evolve.
type codec struct{}

const codecVersion = 1

// header: version, state, flags, refLen(2), created(4), expires(8).
const headerSize = 1 + 1 + 1 + 2 + 4 + 8

var errCorrupt = errors.New("idem: corrupt token record")

func (codec) Marshal(t token) ([]byte, error) {
	b := make([]byte, headerSize, headerSize+len(t.data))
	b[0] = codecVersion
	b[1] = byte(t.state)
	b[2] = t.flags
	binary.BigEndian.PutUint16(b[3:], t.refLen)
	binary.BigEndian.PutUint32(b[5:], t.created)
	binary.BigEndian.PutUint64(b[9:], uint64(t.expires))
	return append(b, t.data...), nil
}

func (codec) Unmarshal(b []byte, t *token) error {
	if len(b) < headerSize || b[0] != codecVersion {
		return fmt.Errorf("%w: %d bytes, version %v", errCorrupt, len(b), b[:min(len(b), 1)])
	}
	*t = token{
		state:   state(b[1]),
		flags:   b[2],
		refLen:  binary.BigEndian.Uint16(b[3:]),
		created: binary.BigEndian.Uint32(b[5:]),
		expires: int64(binary.BigEndian.Uint64(b[9:])),
		data:    string(b[headerSize:]),
	}
	if t.state < claimed || t.state > linked || t.fpLen()+int(t.refLen) > len(t.data) {
		return fmt.Errorf("%w: state %d, %d data bytes", errCorrupt, t.state, len(t.data))
	}
	return nil
}
