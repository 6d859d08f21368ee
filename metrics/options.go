package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// Options say what a Collector reads. Every source is optional, but at
// least one must be set.
type Options struct {
	// DB is the engine whose transaction counters (zest_stm_*) and hook
	// counters (zest_hooks_*) are exported. Default nil: none.
	DB *stm.DB
	// Queues maps a name, the value of the "queue" label, to an effect
	// queue whose depth, oldest age and dead letters are exported
	// (zest_queue_*). Default none.
	Queues map[string]*effectqueue.Queue
	// Movers maps a name, the value of the "queue" label (usually the name
	// of the mover's queue in Queues), to a mover whose deliveries are
	// exported (zest_mover_*). A *mover.Mover is a Mover. Default none.
	Movers map[string]Mover
	// Sagas reports how many sagas are in each state (zest_sagas); see
	// SagaRunners. Default nil: none.
	Sagas SagaSource
	// Idem reports idempotency-token replays (zest_idem_replays_total); see
	// IdemTokens. Default nil: none.
	Idem IdemSource
	// Logger receives the collector's logs: a panicking source at Error.
	// Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns a copy of o with defaults filled in, or an error
// naming every invalid field.
func (o *Options) withDefaults() (Options, error) {
	var c Options
	if o != nil {
		c = *o
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrOptions}, args...)...))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Queues)) {
		q := c.Queues[name]
		if !validName(name) {
			bad("Queues: name %q must be non-empty UTF-8", name)
		}
		if q == nil {
			bad("Queues[%q] is nil", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Movers)) {
		m := c.Movers[name]
		if !validName(name) {
			bad("Movers: name %q must be non-empty UTF-8", name)
		}
		if m == nil {
			bad("Movers[%q] is nil", name)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(errs) == 0 && c.DB == nil && len(c.Queues) == 0 && len(c.Movers) == 0 && c.Sagas == nil && c.Idem == nil {
		errs = append(errs, fmt.Errorf("%w: set DB, Queues, Movers, Sagas or Idem", ErrNoSource))
	}
	if len(errs) > 0 {
		return Options{}, errors.Join(errs...)
	}
	// Private copies, so that the caller changing its maps later does not
	// change what the collector described.
	c.Queues = maps.Clone(c.Queues)
	c.Movers = maps.Clone(c.Movers)
	return c, nil
}

func validName(s string) bool { return s != "" && utf8.ValidString(s) }
