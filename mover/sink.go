package mover

import (
	"context"
	"errors"

	"github.com/zest-stm/zest/effectqueue"
)

// Sink applies entries to an outside system.
//
// A Sink is called concurrently for different ordering keys, and never
// concurrently for the same key.
type Sink interface {
	// Apply performs d's operation and returns nil once the system has
	// confirmed it. Errors are retried unless wrapped with Permanent.
	Apply(ctx context.Context, d Delivery) error
}

// Superseder is implemented by sinks whose operations on one ordering key
// replace each other's effect (full-object puts and deletes do): if a newer
// entry supersedes an older one, applying only the newer gives the same
// visible result.
type Superseder interface {
	Supersedes(newer, older effectqueue.Item) bool
}

// Delivery is one attempt to apply an entry.
type Delivery struct {
	effectqueue.Item
	// Attempt counts attempts, from 1, across restarts.
	Attempt int
	// MayHaveLanded is set when an earlier attempt may have reached the
	// system: a retry, or an entry that was pending when the mover started
	// (it may have been applied just before a crash, and not acked). The
	// sink must then check what landed before writing again, so that the
	// visible result is neither duplicated nor rolled back.
	MayHaveLanded bool
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Permanent wraps err to say that retrying cannot help (access denied, no
// such bucket, invalid name): the mover dead-letters the entry at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanent
	return errors.As(err, &p)
}
