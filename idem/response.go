package idem

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"slices"
)

// recorder buffers one attempt's response.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (rec *recorder) reset() {
	rec.header = http.Header{}
	rec.code = 0
	rec.body.Reset()
}

// Header returns the response header map.
func (rec *recorder) Header() http.Header { return rec.header }

// WriteHeader records the status; later calls are ignored, as net/http does.
func (rec *recorder) WriteHeader(code int) {
	if rec.code == 0 {
		rec.code = code
	}
}

// Write buffers b.
func (rec *recorder) Write(b []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.body.Write(b)
}

func (rec *recorder) status() int {
	if rec.code == 0 {
		return http.StatusOK
	}
	return rec.code
}

func (rec *recorder) send(w http.ResponseWriter) {
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status())
	_, _ = w.Write(rec.body.Bytes())
}

func (rec *recorder) encode() []byte {
	return EncodeResponse(rec.status(), rec.header, rec.body.Bytes())
}

// EncodeResponse encodes an HTTP response as Middleware stores it, for
// Settle: retries of a key linked by a handler then replay this response.
func EncodeResponse(status int, header http.Header, body []byte) []byte {
	// A version byte, the status, the header lines in sorted order, the
	// body; lengths as uvarints.
	b := []byte{1}
	b = binary.AppendUvarint(b, uint64(status))
	names := make([]string, 0, len(header))
	for k := range header {
		names = append(names, k)
	}
	slices.Sort(names)
	n := 0
	for _, k := range names {
		n += len(header[k])
	}
	b = binary.AppendUvarint(b, uint64(n))
	for _, k := range names {
		for _, v := range header[k] {
			b = binary.AppendUvarint(b, uint64(len(k)))
			b = append(b, k...)
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return append(b, body...)
}

var errBadStored = errors.New("idem: stored response is corrupt")

// writeStored replays a response stored by encode.
func writeStored(w http.ResponseWriter, b []byte) error {
	if len(b) == 0 || b[0] != 1 {
		return errBadStored
	}
	b = b[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	str := func() (string, bool) {
		n, ok := next()
		if !ok || n > uint64(len(b)) {
			return "", false
		}
		s := string(b[:n])
		b = b[n:]
		return s, true
	}
	status, ok := next()
	if !ok || status < 100 || status > 999 {
		return errBadStored
	}
	lines, ok := next()
	if !ok {
		return errBadStored
	}
	h := http.Header{}
	for range lines {
		k, ok1 := str()
		v, ok2 := str()
		if !ok1 || !ok2 {
			return errBadStored
		}
		h[k] = append(h[k], v)
	}
	for k, v := range h {
		w.Header()[k] = v
	}
	w.Header().Set(ReplayedHeader, "true")
	w.WriteHeader(int(status))
	_, _ = w.Write(b)
	return nil
}
