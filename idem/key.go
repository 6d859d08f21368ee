package idem

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
)

// Key names one business operation: who asked (Scope, e.g. a user or a
// tenant), which business object (ID, e.g. an order number or a client's
// Idempotency-Key header) and what is done to it (Scene, e.g. "pay",
// "refund"). Two requests with equal keys are the same operation.
//
// ID must not be empty; no part may contain a NUL byte. A Key is a plain
// value, safe to copy and share.
type Key struct {
	Scope string `json:"scope"`
	ID    string `json:"id"`
	Scene string `json:"scene"`
}

// String returns the key as scope/id/scene, for logs.
func (k Key) String() string { return k.Scope + "/" + k.ID + "/" + k.Scene }

// encode checks k and returns its table key: the parts joined by NUL bytes,
// which no part may contain, so that the encoding is unambiguous.
func (k Key) encode(max int) (string, error) {
	if k.ID == "" {
		return "", fmt.Errorf("%w: empty ID", ErrBadKey)
	}
	if strings.ContainsRune(k.Scope, 0) || strings.ContainsRune(k.ID, 0) || strings.ContainsRune(k.Scene, 0) {
		return "", fmt.Errorf("%w: a part contains a NUL byte", ErrBadKey)
	}
	if n := len(k.Scope) + len(k.ID) + len(k.Scene) + 2; n > max {
		return "", fmt.Errorf("%w: %d bytes encoded, over MaxKeySize %d", ErrBadKey, n, max)
	}
	return k.Scope + "\x00" + k.ID + "\x00" + k.Scene, nil
}

// decodeKey reverses encode.
func decodeKey(s string) Key {
	scope, rest, _ := strings.Cut(s, "\x00")
	id, scene, _ := strings.Cut(rest, "\x00")
	return Key{Scope: scope, ID: id, Scene: scene}
}

// FingerprintSize is the size of a fingerprint: a SHA-256 digest.
const FingerprintSize = sha256.Size

// Fingerprint returns the SHA-256 digest of parts, each prefixed by its
// length so that ("ab", "c") and ("a", "bc") differ. Use it to digest an
// operation's parameters for Begin.
func Fingerprint(parts ...[]byte) []byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write(p)
	}
	return h.Sum(nil)
}

func checkFingerprint(fp []byte) error {
	if fp != nil && len(fp) != FingerprintSize {
		return fmt.Errorf("%w: %d bytes, want nil or %d", ErrBadFingerprint, len(fp), FingerprintSize)
	}
	return nil
}
