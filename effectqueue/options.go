package effectqueue

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"
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
	// it was opened without SyncWrites, the queue calls Sync after every
	// write in Sync mode.
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
	// AckBatch is the most keys deleted in one Badger write by Ack.
	// Default 1000.
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

func (o *Options) withDefaults() (Options, error) {
	if o == nil {
		return Options{}, errors.New("effectqueue: options required: set Dir or Badger")
	}
	r := *o
	var errs []error
	if (r.Dir == "") == (r.Badger == nil) {
		errs = append(errs, errors.New("exactly one of Dir and Badger must be set"))
	}
	if r.Durability > Async {
		errs = append(errs, fmt.Errorf("unknown Durability %d", r.Durability))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"FlushInterval", int64(r.FlushInterval)}, {"MaxEntrySize", int64(r.MaxEntrySize)},
		{"AckBatch", int64(r.AckBatch)}, {"GCInterval", int64(r.GCInterval)}, {"MemTableSize", r.MemTableSize}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s is %d, must not be negative", f.name, f.v))
		}
	}
	if len(errs) > 0 {
		return Options{}, fmt.Errorf("effectqueue: invalid options: %w", errors.Join(errs...))
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
	if r.AckBatch == 0 {
		r.AckBatch = 1000
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
	return r, nil
}

// badgerOptions returns the options for a Badger the queue owns: sized for
// a process that embeds it, with SyncWrites on. Badger's conflict detection
// is off: the writer only adds new keys, and the queue serializes its own
// read-modify-write operations (see consumer).
func (o *Options) badgerOptions() badger.Options {
	return badger.DefaultOptions(o.Dir).
		WithSyncWrites(true).
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
		WithLogger(badgerLogger{o.Logger})
}

// badgerLogger passes Badger's warnings and errors to slog; its info and
// debug chatter is dropped.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error("badger: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn("badger: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}
