package stm

import (
	"errors"
	"fmt"
	"log/slog"
)

// Options configure a DB. The zero value of each field selects its default;
// a nil *Options selects every default.
type Options struct {
	// MaxAttempts is the redo limit: Run gives up with ErrTooManyAttempts
	// after this many attempts. Default 500.
	MaxAttempts int

	// EscalateAfter is the number of failed attempts after which a
	// transaction runs in serial mode: new update commits wait until it has
	// committed, so a hot record cannot starve it. Default 8.
	EscalateAfter int

	// Logger receives the engine's logs (hook panics, a stopped log).
	// Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the options Open uses for nil.
func DefaultOptions() Options {
	return Options{MaxAttempts: 500, EscalateAfter: 8, Logger: slog.Default()}
}

// withDefaults returns a copy of o with the zero fields filled in, or an error
// naming every invalid field.
func (o *Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o == nil {
		return d, nil
	}
	r := *o
	var errs []error
	if r.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("MaxAttempts is %d, must be positive", r.MaxAttempts))
	}
	if r.EscalateAfter < 0 {
		errs = append(errs, fmt.Errorf("EscalateAfter is %d, must be positive", r.EscalateAfter))
	}
	if len(errs) == 0 {
		if r.MaxAttempts == 0 {
			r.MaxAttempts = d.MaxAttempts
		}
		if r.EscalateAfter == 0 {
			r.EscalateAfter = min(d.EscalateAfter, r.MaxAttempts)
		}
		if r.EscalateAfter > r.MaxAttempts {
			errs = append(errs, fmt.Errorf("EscalateAfter is %d, more than MaxAttempts (%d): "+
				"a transaction would give up before it runs in serial mode", r.EscalateAfter, r.MaxAttempts))
		}
	}
	if len(errs) > 0 {
		return Options{}, fmt.Errorf("stm: invalid options: %w", errors.Join(errs...))
	}
	if r.Logger == nil {
		r.Logger = d.Logger
	}
	return r, nil
}
