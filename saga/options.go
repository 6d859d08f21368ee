package saga

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options configure a Runner. The zero value of each field selects its
// default; a nil *Options selects every default. New copies it; OnStuck is
// called from the goroutines that commit, so it must be safe for concurrent
// use.
type Options struct {
	// Retry is the retry policy of remote steps that do not set their own
	// fields. Default 5 attempts, backoff from 100ms doubling up to 30s.
	Retry Retry
	// Timeout bounds one attempt of a remote call or query when its step
	// sets none. Default 10s.
	Timeout time.Duration
	// MaxIDLen is the longest saga id accepted, in bytes. Default 256.
	MaxIDLen int
	// MaxStateSize is the largest encoded state accepted, in bytes, at
	// Start and after each step. Default 64 KiB. It must stay well under
	// the queue's entry limit, since a saga's record rides in the same
	// atomic write as its entries.
	MaxStateSize int
	// MaxHistory is the most history events kept per saga: the first (the
	// start) and the newest. Default 100.
	MaxHistory int
	// Name prefixes the durable tables of the runner ("<Name>.sagas",
	// "<Name>.stuck") and the kind of its queue entries is "saga.call"
	// whatever the name. Default "saga".
	Name string
	// OnStuck is called after the commit of every transaction that leaves a
	// saga stuck, outside the transaction (in a whilecommit hook). A panic
	// is recovered and logged. Default none.
	OnStuck func(info Info)
	// Logger receives the runner's logs: state changes at Info and Warn,
	// attempts at Debug. Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the options New uses for nil.
func DefaultOptions() Options {
	return Options{
		Retry:        Retry{MaxAttempts: 5, Base: 100 * time.Millisecond, Max: 30 * time.Second},
		Timeout:      10 * time.Second,
		MaxIDLen:     256,
		MaxStateSize: 64 << 10,
		MaxHistory:   100,
		Name:         "saga",
	}
}

func (o *Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o == nil {
		d.Logger = slog.Default()
		return d, nil
	}
	c := *o
	var errs []error
	bad := func(field string, v any) {
		errs = append(errs, fmt.Errorf("saga: Options.%s is %v, must not be negative", field, v))
	}
	if c.Retry.MaxAttempts < 0 {
		bad("Retry.MaxAttempts", c.Retry.MaxAttempts)
	}
	if c.Retry.Base < 0 {
		bad("Retry.Base", c.Retry.Base)
	}
	if c.Retry.Max < 0 {
		bad("Retry.Max", c.Retry.Max)
	}
	if c.Timeout < 0 {
		bad("Timeout", c.Timeout)
	}
	if c.MaxIDLen < 0 {
		bad("MaxIDLen", c.MaxIDLen)
	}
	if c.MaxStateSize < 0 {
		bad("MaxStateSize", c.MaxStateSize)
	}
	if c.MaxHistory < 0 {
		bad("MaxHistory", c.MaxHistory)
	}
	if c.MaxHistory == 1 {
		errs = append(errs, errors.New("saga: Options.MaxHistory is 1, must be 0 (default) or at least 2"))
	}
	c.Retry = c.Retry.or(d.Retry)
	if c.Retry.Base > c.Retry.Max {
		errs = append(errs, fmt.Errorf("saga: Options.Retry.Base (%v) is larger than Options.Retry.Max (%v)", c.Retry.Base, c.Retry.Max))
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxIDLen == 0 {
		c.MaxIDLen = d.MaxIDLen
	}
	if c.MaxStateSize == 0 {
		c.MaxStateSize = d.MaxStateSize
	}
	if c.MaxHistory == 0 {
		c.MaxHistory = d.MaxHistory
	}
	if c.Name == "" {
		c.Name = d.Name
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, errors.Join(errs...)
}
