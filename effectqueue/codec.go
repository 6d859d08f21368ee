package effectqueue

import (
	"encoding/binary"
	"math"
)

// The stored form of an entry is msgpack (see record). The hot paths
// (Enqueue, the commit, Read) encode and decode it by hand with the
// functions below, which write and read plain msgpack: any msgpack reader
// reads what they write, and decode falls back to the reflective decoder
// for anything they do not expect (a field added later, an odd encoding).

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

func appendStr(b []byte, s string) []byte {
	return append(appendStrHeader(b, len(s)), s...)
}

// appendStrHeader appends the header of a string of n bytes.
func appendStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
}

func appendBin(b []byte, p []byte) []byte {
	switch n := len(p); {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, p...)
}

func appendInt64(b []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

// reader reads msgpack values from a buffer; ok turns false at the first
// thing it does not expect, and stays false.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) byte1() byte {
	if !r.ok || len(r.b) < 1 {
		r.ok = false
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) n(k int) []byte {
	if !r.ok || k < 0 || len(r.b) < k {
		r.ok = false
		return nil
	}
	p := r.b[:k:k]
	r.b = r.b[k:]
	return p
}

func (r *reader) size(c byte) int {
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		return int(r.byte1())
	case 0xc5, 0xda, 0xde: // bin16, str16, map16
		if p := r.n(2); p != nil {
			return int(binary.BigEndian.Uint16(p))
		}
	case 0xc6, 0xdb, 0xdf: // bin32, str32, map32
		if p := r.n(4); p != nil {
			return int(binary.BigEndian.Uint32(p))
		}
	default:
		r.ok = false
	}
	return 0
}

// mapLen reads a map header; a nil reads as an empty map.
func (r *reader) mapLen() (n int, isNil bool) {
	c := r.byte1()
	switch {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), false
	case c == 0xde || c == 0xdf:
		return r.size(c), false
	case c == 0xc0:
		return 0, true
	}
	r.ok = false
	return 0, false
}

// raw reads a string or binary value's bytes (nil for a msgpack nil); they
// alias the buffer.
func (r *reader) raw() []byte {
	c := r.byte1()
	switch {
	case c >= 0xa0 && c <= 0xbf:
		return r.n(int(c & 0x1f))
	case c == 0xc0:
		return nil
	case c == 0xc4 || c == 0xc5 || c == 0xc6 || c == 0xd9 || c == 0xda || c == 0xdb:
		return r.n(r.size(c))
	}
	r.ok = false
	return nil
}

func (r *reader) str() string { return string(r.raw()) }

// int reads any msgpack integer.
func (r *reader) int() int64 {
	c := r.byte1()
	switch {
	case c <= 0x7f:
		return int64(c)
	case c >= 0xe0:
		return int64(int8(c))
	}
	var k int
	switch c {
	case 0xcc, 0xd0:
		k = 1
	case 0xcd, 0xd1:
		k = 2
	case 0xce, 0xd2:
		k = 4
	case 0xcf, 0xd3:
		k = 8
	default:
		r.ok = false
		return 0
	}
	p := r.n(k)
	if p == nil {
		return 0
	}
	var u uint64
	for _, x := range p {
		u = u<<8 | uint64(x)
	}
	if c >= 0xd0 { // signed: extend from k bytes
		shift := 64 - 8*k
		return int64(u<<shift) >> shift
	}
	return int64(u)
}

// decodeFast decodes a record written by encodeStaged or encode, or
// reports false for the reflective decoder to try.
func decodeFast(b []byte, rec *record) bool {
	r := reader{b: b, ok: true}
	n, isNil := r.mapLen()
	if isNil {
		return false
	}
	for range n {
		key := r.raw()
		if !r.ok || len(key) != 1 {
			return false
		}
		switch key[0] {
		case 'v':
			v := r.int()
			if v < 0 || v > math.MaxUint8 {
				return false
			}
			rec.V = uint8(v)
		case 'o':
			rec.OpID = r.str()
		case 'k':
			rec.Kind = r.str()
		case 'y':
			rec.Key = r.str()
		case 'r':
			rec.Reason = r.str()
		case 'p':
			if p := r.raw(); len(p) > 0 {
				rec.Payload = append([]byte(nil), p...)
			}
		case 't':
			rec.Time = r.int()
		case 'd':
			rec.DeadAt = r.int()
		case 'm':
			m, isNil := r.mapLen()
			if !r.ok || isNil {
				break
			}
			rec.Meta = make(map[string]string, m)
			for range m {
				k := r.str()
				rec.Meta[k] = r.str()
			}
		default:
			return false
		}
		if !r.ok {
			return false
		}
	}
	return r.ok && len(r.b) == 0
}
