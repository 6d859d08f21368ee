package effectqueue

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/skl"
)

// Durability says when Run returns for a transaction that enqueued entries.
type Durability uint8

const (
	// Sync (the default): Run returns after the transaction's entries are
	// written and fsynced. A power failure loses nothing that Run returned
	// nil for.
	Sync Durability = iota
	// Async: Run returns once the entries are handed to the writer, which
	// writes and fsyncs them within Options.FlushInterval. A crash or power
	// failure can lose the transactions of the last interval: always whole
	// transactions, and always the newest ones, so the queue on disk is
	// still a gap-free prefix of the commit order.
	Async
)

// Options configure a Queue. The zero value of each field selects its
// default; a nil *Options selects every default, which requires Dir or
// Badger to be set, so a nil *Options is refused.
type Options struct {
	// Dir is the directory of the queue's own Badger database. Exactly one
	// of Dir and Badger must be set.
	Dir string
	// Badger is a database the caller owns; the queue keeps its keys under
	// Prefix and does not close it. Value-log GC is left to the owner. If
	// it was opened without SyncWrites, the queue calls Sync after each of
	// its writes that must be durable (see the package doc); writes of the
	// owner's own between a queue write and its Sync can then move Badger
	// to a new memtable whose log alone Sync flushes, so open it with
	// SyncWrites for the full guarantee after a power failure.
	Badger *badger.DB
	// Prefix is prepended to every key of the queue. Default "zq/".
	Prefix string
	// Durability is Sync (default) or Async.
	Durability Durability
	// FlushInterval bounds how long an Async commit waits to be written.
	// Default 10ms.
	FlushInterval time.Duration
	// MaxEntrySize is the largest encoded entry accepted. Default 1 MiB.
	MaxEntrySize int
	// AckBatch is the most entries one Badger write of Ack removes.
	// Default 1000, or fewer if one atomic Badger write cannot hold them.
	AckBatch int
	// GCInterval is how often the value-log GC runs on a Badger the queue
	// owns. Default 1 minute.
	GCInterval time.Duration
	// MemTableSize is the Badger memtable size for a queue that owns its
	// Badger. Default 16 MiB (Badger's own default is 64 MiB, with five of
	// them, which costs a game server ~86 MB of heap before any data).
	MemTableSize int64
	// Logger receives the queue's logs. Default slog.Default().
	Logger *slog.Logger
}

// minMemTableSize is the smallest MemTableSize accepted: below it Badger's
// largest atomic write holds only a few entries.
const minMemTableSize = 1 << 20

// withDefaults validates o, all of it at once, and returns a copy with the
// defaults filled in. The error wraps ErrInvalidOptions and names every
// invalid field.
func (o *Options) withDefaults() (Options, error) {
	if o == nil {
		return Options{}, fmt.Errorf("%w: options required: set Dir or Badger", ErrInvalidOptions)
	}
	r := *o
	var bad []string
	badf := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	if (r.Dir == "") == (r.Badger == nil) {
		badf("Dir, Badger: exactly one must be set")
	}
	if r.Badger != nil {
		if r.Badger.IsClosed() {
			badf("Badger: the database is closed")
		}
		if r.MemTableSize != 0 {
			badf("MemTableSize is %d: it applies only to a Badger the queue opens (Dir); size the memtable of your own Badger when you open it", r.MemTableSize)
		}
		if r.GCInterval != 0 {
			badf("GCInterval is %v: it applies only to a Badger the queue opens (Dir); run the value-log GC of your own Badger yourself", r.GCInterval)
		}
	}
	if r.Durability > Async {
		badf("Durability is %d, must be Sync (0) or Async (1)", r.Durability)
	}
	for _, f := range []struct {
		name string
		v    int64
		dur  bool
	}{{"FlushInterval", int64(r.FlushInterval), true}, {"MaxEntrySize", int64(r.MaxEntrySize), false},
		{"AckBatch", int64(r.AckBatch), false}, {"GCInterval", int64(r.GCInterval), true}, {"MemTableSize", r.MemTableSize, false}} {
		switch {
		case f.v >= 0:
		case f.dur:
			badf("%s is %v, must not be negative", f.name, time.Duration(f.v))
		default:
			badf("%s is %d, must not be negative", f.name, f.v)
		}
	}
	if r.MaxEntrySize > 0 && r.MaxEntrySize <= stagedOverhead {
		badf("MaxEntrySize is %d, must be more than %d (the stored overhead of an entry)", r.MaxEntrySize, stagedOverhead)
	}
	if r.MemTableSize > 0 && r.MemTableSize < minMemTableSize {
		badf("MemTableSize is %d, must be at least %d", r.MemTableSize, minMemTableSize)
	}
	if r.Prefix == "" {
		r.Prefix = "zq/"
	}
	if r.FlushInterval == 0 {
		r.FlushInterval = 10 * time.Millisecond
	}
	if r.MaxEntrySize == 0 {
		r.MaxEntrySize = 1 << 20
	}
	if r.GCInterval == 0 {
		r.GCInterval = time.Minute
	}
	if r.MemTableSize == 0 {
		r.MemTableSize = 16 << 20
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	// What one atomic Badger write holds bounds an entry and an Ack batch.
	// A Badger the queue opens will have the limits Badger derives from
	// MemTableSize (15% of it, and that over the size of a skiplist node).
	if r.Badger != nil && !r.Badger.IsClosed() || r.Badger == nil && r.MemTableSize >= minMemTableSize {
		maxSize, maxCount := r.batchLimits()
		if o.MaxEntrySize >= 0 && int64(r.MaxEntrySize) > maxSize/2 {
			badf("MaxEntrySize is %d, more than half the largest atomic Badger write (%d); raise MemTableSize", r.MaxEntrySize, maxSize)
		}
		if r.AckBatch == 0 {
			r.AckBatch = int(min(1000, (maxCount-1)/2))
		}
		if o.AckBatch >= 0 && int64(2*r.AckBatch+1) > maxCount {
			badf("AckBatch is %d: an Ack batch deletes 2 keys an entry, and the largest atomic Badger write holds %d keys; lower AckBatch or raise MemTableSize", r.AckBatch, maxCount)
		}
	}
	if len(bad) > 0 {
		return Options{}, fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(bad, "; "))
	}
	return r, nil
}

// batchLimits returns the largest atomic write, in bytes and keys, of the
// queue's Badger.
func (o *Options) batchLimits() (size, count int64) {
	if o.Badger != nil {
		return o.Badger.MaxBatchSize(), o.Badger.MaxBatchCount()
	}
	size = 15 * o.MemTableSize / 100
	return size, size / int64(skl.MaxNodeSize)
}

// badgerOptions returns the options for a Badger the queue owns: sized for
// a process that embeds it, with SyncWrites off (the queue calls Sync after
// each write that must be durable, see Queue.wmu). Badger's conflict detection
// is off: the writer only adds new keys, and the queue serializes its own
// read-modify-write operations (see consumer).
func (o *Options) badgerOptions() badger.Options {
	return badger.DefaultOptions(o.Dir).
		// The queue syncs what must be durable itself (see Queue.wmu).
		WithSyncWrites(false).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(min(1<<20, o.MemTableSize/32)).
		WithNumCompactors(2).
		WithDetectConflicts(false).
		// Entries live briefly: compressing them on flush costs CPU on
		// every entry and saves disk only for a backlog.
		WithCompression(options.None).
		// Badger's expvar metrics cost atomics on every operation; the
		// queue has its own Stats.
		WithMetricsEnabled(false).
		WithLogger(badgerLogger{o.Logger})
}

// badgerLogger passes Badger's warnings and errors to slog; its info and
// debug chatter is dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error("badger: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn("badger: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}
