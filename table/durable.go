package table

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/internal/seam"
	"github.com/zest-stm/zest/internal/stmx"
	"github.com/zest-stm/zest/stm"
)

// Codec encodes the values of a durable table.
type Codec[V any] interface {
	Marshal(v V) ([]byte, error)
	Unmarshal(data []byte, v *V) error
}

// Msgpack is the default Codec. Structs are encoded as maps keyed by field
// name, so a field added to V reads as its zero value from older records,
// and a field removed from V is ignored when old records are read.
type Msgpack[V any] struct{}

// Marshal encodes v.
func (Msgpack[V]) Marshal(v V) ([]byte, error) { return msgpack.Marshal(v) }

// Unmarshal decodes data into v.
func (Msgpack[V]) Unmarshal(data []byte, v *V) error { return msgpack.Unmarshal(data, v) }

// DurableOptions configure a durable table. A nil *DurableOptions selects
// the defaults.
type DurableOptions[V any] struct {
	// Codec encodes values. Default Msgpack[V].
	Codec Codec[V]
}

// LoadStats describes what NewDurable loaded.
type LoadStats struct {
	Records  int
	Bytes    int64
	Duration time.Duration
}

// durable is the persistent side of a table.
type durable[K comparable, V any] struct {
	prefix []byte
	codec  Codec[V]
	keys   keyCodec[K]
	loaded LoadStats
}

// ErrNoStore is returned by NewDurable when the DB has no durable log that
// can load records back (open the effect queue first).
var ErrNoStore = errors.New("table: durable table needs the DB's durable log: open the effect queue (effectqueue.Open) first")

// NewDurable creates the table called name on db, persisted in the DB's
// durable log (the effect queue's Badger), and loads its records.
//
// Each transaction's writes to the table are written in the same atomic
// write as its queue entries, in the queue's durability mode: after a crash,
// a transaction's records and its entries are both there or both absent.
//
// Keys are stored so that integer and string keys keep their order in
// Badger; other key types are stored as msgpack. Values are encoded with
// opts.Codec (msgpack by default; see Msgpack for schema evolution).
//
// NewDurable must run before any transaction uses the table, and at most
// once per name and DB.
func NewDurable[K comparable, V any](db *stm.DB, name string, opts *DurableOptions[V]) (*Table[K, V], error) {
	if strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("table: name %q contains a NUL byte", name)
	}
	store, ok := stmx.Log(db).(seam.Store)
	if !ok {
		return nil, ErrNoStore
	}
	t, err := New[K, V](db, name)
	if err != nil {
		return nil, err
	}
	d := &durable[K, V]{prefix: append(append([]byte{}, store.KeyPrefix()...), "zt/"+name+"\x00"...), codec: Msgpack[V]{}, keys: keyCodecFor[K]()}
	if opts != nil && opts.Codec != nil {
		d.codec = opts.Codec
	}
	if opts == nil || opts.Codec == nil {
		if err := faithful(reflect.TypeFor[V](), reflect.TypeFor[V]().String(), map[reflect.Type]bool{}); err != nil {
			return nil, fmt.Errorf("table: %q: value type %v does not round-trip through msgpack: %w; "+
				"export the field, or give DurableOptions.Codec a codec that keeps it", name, reflect.TypeFor[V](), err)
		}
	}
	if keyNeedsMsgpack[K]() {
		if err := faithful(reflect.TypeFor[K](), reflect.TypeFor[K]().String(), map[reflect.Type]bool{}); err != nil {
			return nil, fmt.Errorf("table: %q: key type %v does not round-trip through msgpack: %w", name, reflect.TypeFor[K](), err)
		}
	}
	t.dur = d
	start := time.Now()
	err = store.Scan(d.prefix, func(key, value []byte) error {
		k, err := d.keys.decode(key[len(d.prefix):])
		if err != nil {
			return fmt.Errorf("table %q: key %x: %w", name, key, err)
		}
		var v V
		if err := d.codec.Unmarshal(value, &v); err != nil {
			return fmt.Errorf("table %q: value of key %v: %w", name, k, err)
		}
		e := t.ix.getOrCreate(k)
		stmx.InitVar(&e.v, t.ix.group, v)
		d.loaded.Records++
		d.loaded.Bytes += int64(len(key) + len(value))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("table: load %q: %w", name, err)
	}
	d.loaded.Duration = time.Since(start)
	return t, nil
}

// Loaded reports what NewDurable loaded (zero for a table that is not
// durable).
func (t *Table[K, V]) Loaded() LoadStats {
	if t.dur == nil {
		return LoadStats{}
	}
	return t.dur.loaded
}

// record notes a write of the current transaction for the durable log.
func (t *Table[K, V]) record(tx *stm.Tx, k K, v V, del bool) {
	d := t.dur
	p := stmx.Local(tx, d, func() seam.Local { return &tableWrites{} }).(*tableWrites)
	key := append(append([]byte{}, d.prefix...), d.keys.encode(k)...)
	w := tableWrite{key: key, del: del}
	if !del {
		b, err := d.codec.Marshal(v)
		if err != nil {
			// Put cannot return an error: a value the codec cannot encode
			// is a programming error in V or the codec.
			panic(fmt.Sprintf("table %q: cannot encode value of key %v: %v", t.name, k, err))
		}
		w.value = b
	}
	p.writes = append(p.writes, w)
	p.size += int64(len(w.key) + len(w.value))
}

type tableWrite struct {
	key, value []byte
	del        bool
}

// tableWrites is a transaction's writes to one durable table: an
// seam.Participant that stages them with the commit.
type tableWrites struct {
	writes []tableWrite
	size   int64
}

func (p *tableWrites) Mark() int { return len(p.writes) }

func (p *tableWrites) RollbackTo(mark int) {
	for _, w := range p.writes[mark:] {
		p.size -= int64(len(w.key) + len(w.value))
	}
	clear(p.writes[mark:])
	p.writes = p.writes[:mark]
}

func (p *tableWrites) End(bool)             {}
func (p *tableWrites) Pending() bool        { return len(p.writes) > 0 }
func (p *tableWrites) Size() (int, int64)   { return len(p.writes), p.size }
func (p *tableWrites) Unstage(*seam.Commit) {}
func (p *tableWrites) Stage(c *seam.Commit) {
	for _, w := range p.writes {
		c.Add(seam.Record{Key: w.key, Value: w.value, Delete: w.del})
	}
}

// keyCodec encodes keys so that integer and string keys sort as they
// compare.
type keyCodec[K comparable] struct {
	encode func(K) []byte
	decode func([]byte) (K, error)
}

func keyCodecFor[K comparable]() keyCodec[K] {
	t := reflect.TypeFor[K]()
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return keyCodec[K]{
			encode: func(k K) []byte {
				return binary.BigEndian.AppendUint64(nil, uint64(reflect.ValueOf(k).Int())^(1<<63))
			},
			decode: func(b []byte) (K, error) {
				var k K
				if len(b) != 8 {
					return k, fmt.Errorf("integer key of %d bytes", len(b))
				}
				reflect.ValueOf(&k).Elem().SetInt(int64(binary.BigEndian.Uint64(b) ^ (1 << 63)))
				return k, nil
			},
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return keyCodec[K]{
			encode: func(k K) []byte { return binary.BigEndian.AppendUint64(nil, reflect.ValueOf(k).Uint()) },
			decode: func(b []byte) (K, error) {
				var k K
				if len(b) != 8 {
					return k, fmt.Errorf("integer key of %d bytes", len(b))
				}
				reflect.ValueOf(&k).Elem().SetUint(binary.BigEndian.Uint64(b))
				return k, nil
			},
		}
	case reflect.String:
		return keyCodec[K]{
			encode: func(k K) []byte { return []byte(reflect.ValueOf(k).String()) },
			decode: func(b []byte) (K, error) {
				var k K
				reflect.ValueOf(&k).Elem().SetString(string(b))
				return k, nil
			},
		}
	}
	return keyCodec[K]{
		encode: func(k K) []byte {
			b, err := msgpack.Marshal(k)
			if err != nil {
				panic(fmt.Sprintf("table: cannot encode key %v: %v", k, err))
			}
			return b
		},
		decode: func(b []byte) (K, error) {
			var k K
			err := msgpack.Unmarshal(b, &k)
			return k, err
		},
	}
}

// keyNeedsMsgpack reports whether keys of type K are stored as msgpack
// (they are not integers or strings).
func keyNeedsMsgpack[K comparable]() bool {
	switch reflect.TypeFor[K]().Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr, reflect.String:
		return false
	}
	return true
}

var (
	timeType          = reflect.TypeFor[time.Time]()
	customEncoderType = reflect.TypeFor[msgpack.CustomEncoder]()
	customDecoderType = reflect.TypeFor[msgpack.CustomDecoder]()
	marshalerType     = reflect.TypeFor[msgpack.Marshaler]()
	unmarshalerType   = reflect.TypeFor[msgpack.Unmarshaler]()
	binMarshalerType  = reflect.TypeFor[encoding.BinaryMarshaler]()
	binUnmarshalType  = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

// faithful reports why msgpack would not give back a value of type t as it
// was written: an unexported struct field (msgpack skips it), an interface
// (it comes back as a generic map, slice or number type), a func, channel or
// unsafe pointer (it cannot be encoded). Types that encode themselves
// (time.Time, msgpack.CustomEncoder, msgpack.Marshaler,
// encoding.BinaryMarshaler, with their decoders) are trusted. path names
// the place of t in the value, for the error.
func faithful(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	pt := reflect.PointerTo(t)
	switch {
	case t == timeType,
		pt.Implements(customEncoderType) && pt.Implements(customDecoderType),
		pt.Implements(marshalerType) && pt.Implements(unmarshalerType),
		pt.Implements(binMarshalerType) && pt.Implements(binUnmarshalType):
		return nil
	}
	switch t.Kind() {
	case reflect.Interface:
		return fmt.Errorf("%s is an interface (%v): it would read back as a generic type", path, t)
	case reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return fmt.Errorf("%s is a %v, which msgpack cannot encode", path, t.Kind())
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return faithful(t.Elem(), path+"[]", seen)
	case reflect.Map:
		if err := faithful(t.Key(), path+" key", seen); err != nil {
			return err
		}
		return faithful(t.Elem(), path+" value", seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Tag.Get("msgpack") == "-" {
				continue
			}
			if !f.IsExported() && !(f.Anonymous && f.Type.Kind() == reflect.Struct) {
				return fmt.Errorf("field %s.%s is unexported: msgpack would drop it", path, f.Name)
			}
			if err := faithful(f.Type, path+"."+f.Name, seen); err != nil {
				return err
			}
		}
	}
	return nil
}
