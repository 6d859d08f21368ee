package mover

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options configure a Mover. The zero value of each field selects its
// default; a nil *Options selects every default.
type Options struct {
	// Concurrency is the number of workers, each applying one ordering
	// key at a time (or, with a BatchSink, one batch of up to BatchSize
	// keys). Default 16.
	Concurrency int
	// BatchSize is how many ordering keys a worker serves together with a
	// sink that implements BatchSink (natssink does): their head entries
	// go to the sink in one ApplyBatch call, one entry per key, so up to
	// Concurrency × BatchSize keys are in flight. 1 turns batching off.
	// Default 16.
	BatchSize int
	// MaxAttempts is the number of attempts, across restarts, after which a
	// failing entry is dead-lettered. Default 20.
	MaxAttempts int
	// BaseBackoff is the wait after a first failure; it doubles each
	// attempt up to MaxBackoff, with full jitter. Defaults 100ms and 30s.
	BaseBackoff, MaxBackoff time.Duration
	// PollInterval is the fallback poll of the queue; commits wake the
	// mover without it. Default 5s.
	PollInterval time.Duration
	// MaxBuffered bounds the entries read but not yet done. Default 4096.
	MaxBuffered int
	// MaxBufferedBytes bounds the payload bytes of the entries read and
	// waiting in lanes (one read may go over it by a batch of average-sized
	// entries). Default 64 MiB.
	MaxBufferedBytes int64
	// AckInterval is how long acks may gather before they are written
	// (also written at 256, and at once when every entry read is
	// delivered, since no more acks can come until new entries are read).
	// An ack write is not an fsync (see effectqueue's "What is synced"),
	// but it is a Badger write: fewer, larger ones cost less CPU per entry
	// (BenchmarkPut1KiB in mover/s3sink, ZEST_BENCH_ACK_INTERVAL). A crash
	// re-applies, checked, what was delivered and not yet acked. Default
	// 100ms.
	AckInterval time.Duration
	// Coalesce, when set, skips an entry if a newer entry of the same
	// ordering key is already waiting and the sink says it supersedes it
	// (see Superseder). The skipped entry is acked and counted as
	// superseded. Off by default: every committed entry is applied.
	Coalesce bool
	// LogInterval bounds the log volume: per interval, at most 10 lane
	// state changes (a lane starts failing, recovers, an entry is
	// dead-lettered) are logged, and one summary line while lanes are
	// failing or lines were dropped. Each failed attempt is logged at Debug.
	// Default 1 minute.
	LogInterval time.Duration
	// StartPaused makes the mover start paused (see Mover.Pause), for an
	// application that keeps an operator's pause across restarts. Default
	// false.
	StartPaused bool
	// Logger receives the mover's logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{{"Concurrency", int64(r.Concurrency)}, {"BatchSize", int64(r.BatchSize)}, {"MaxAttempts", int64(r.MaxAttempts)},
		{"BaseBackoff", int64(r.BaseBackoff)}, {"MaxBackoff", int64(r.MaxBackoff)},
		{"PollInterval", int64(r.PollInterval)}, {"MaxBuffered", int64(r.MaxBuffered)}, {"MaxBufferedBytes", r.MaxBufferedBytes},
		{"AckInterval", int64(r.AckInterval)}, {"LogInterval", int64(r.LogInterval)}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s is %d, must not be negative", f.name, f.v))
		}
	}
	if len(errs) > 0 {
		return Options{}, fmt.Errorf("mover: invalid options: %w", errors.Join(errs...))
	}
	def := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	if r.Concurrency == 0 {
		r.Concurrency = 16
	}
	if r.BatchSize == 0 {
		r.BatchSize = 16
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = 20
	}
	def(&r.BaseBackoff, 100*time.Millisecond)
	def(&r.MaxBackoff, 30*time.Second)
	def(&r.PollInterval, 5*time.Second)
	def(&r.AckInterval, 100*time.Millisecond)
	def(&r.LogInterval, time.Minute)
	if r.MaxBuffered == 0 {
		r.MaxBuffered = 4096
	}
	if r.MaxBufferedBytes == 0 {
		r.MaxBufferedBytes = 64 << 20
	}
	if r.MaxBackoff < r.BaseBackoff {
		return Options{}, fmt.Errorf("mover: invalid options: MaxBackoff %v is below BaseBackoff %v", r.MaxBackoff, r.BaseBackoff)
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	return r, nil
}
