package idem

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// MaxRefSize is the longest reference accepted by Link and Settle.
const MaxRefSize = 1024

// maxTTL keeps expiry times far from int64 overflow.
const maxTTL = 100 * 365 * 24 * time.Hour

// Options configure a Tokens. The zero value of each field selects its
// default; a nil *Options selects every default.
type Options struct {
	// TTL is how long a finished token is kept after it was begun (or, for
	// a linked token, after it was settled). After it, a request with the
	// same key runs the operation again. Default 24 hours.
	TTL time.Duration
	// MaxResultSize is the largest result Finish and Settle store, in
	// bytes. Default 64 KiB.
	MaxResultSize int
	// MaxKeySize is the largest key, in bytes: the three parts plus two
	// separators. Default 512.
	MaxKeySize int
	// SweepBatch is the most tokens one sweeper transaction looks at.
	// Default 256.
	SweepBatch int
	// SweepRate bounds how many tokens per second Sweep looks at, so that
	// a burst of expiries does not crowd out the business transactions.
	// Default 10,000. Expire is not rate-bounded.
	SweepRate int
	// Granularity is the width of the expiry index's time buckets: a token
	// is removed at most this long after it expired. Default 1 second.
	Granularity time.Duration
	// Now is the clock. A transaction reads it once, at its first call of
	// a transactional method of the Tokens, and all its calls use that
	// time. Default time.Now.
	Now func() time.Time
	// Logger receives the package's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the options New uses for nil.
func DefaultOptions() Options {
	return Options{
		TTL:           24 * time.Hour,
		MaxResultSize: 64 << 10,
		MaxKeySize:    512,
		SweepBatch:    256,
		SweepRate:     10_000,
		Granularity:   time.Second,
		Now:           time.Now,
		Logger:        slog.Default(),
	}
}

// withDefaults copies o, fills its zero fields and reports every invalid
// field at once.
func (o *Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o == nil {
		return d, nil
	}
	c := *o
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("idem: Options.%s = %v: %s", field, v, why))
	}
	switch {
	case c.TTL == 0:
		c.TTL = d.TTL
	case c.TTL < time.Millisecond || c.TTL > maxTTL:
		bad("TTL", c.TTL, "must be between 1ms and 100 years")
	}
	switch {
	case c.MaxResultSize == 0:
		c.MaxResultSize = d.MaxResultSize
	case c.MaxResultSize < 0 || c.MaxResultSize > 64<<20:
		bad("MaxResultSize", c.MaxResultSize, "must be between 1 and 64 MiB")
	}
	switch {
	case c.MaxKeySize == 0:
		c.MaxKeySize = d.MaxKeySize
	case c.MaxKeySize < 3 || c.MaxKeySize > 64<<10:
		bad("MaxKeySize", c.MaxKeySize, "must be between 3 and 65536")
	}
	switch {
	case c.SweepBatch == 0:
		c.SweepBatch = d.SweepBatch
	case c.SweepBatch < 0 || c.SweepBatch > 100_000:
		bad("SweepBatch", c.SweepBatch, "must be between 1 and 100000")
	}
	switch {
	case c.SweepRate == 0:
		c.SweepRate = d.SweepRate
	case c.SweepRate < 0:
		bad("SweepRate", c.SweepRate, "must be positive")
	}
	switch {
	case c.Granularity == 0:
		c.Granularity = d.Granularity
	case c.Granularity < time.Millisecond || c.Granularity > time.Hour:
		bad("Granularity", c.Granularity, "must be between 1ms and 1h")
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c, errors.Join(errs...)
}
