package mover

import (
	"context"
	"errors"
	"net"
	"os"

	"github.com/zest-stm/zest/effectqueue"
)

// Sink applies entries to an outside system.
//
// A Sink is called concurrently for different ordering keys, and never
// concurrently for the same key. It need not be comparable.
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
	// Writer identifies the queue that committed the entry (its
	// effectqueue.Queue.ID, generated once when the queue was created). A
	// sink that records what landed records Writer with Seq: sequence
	// numbers of different queues, or of a queue that was recreated, are
	// not comparable.
	Writer string
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

// classed carries an error class set by a sink.
type classed struct {
	class string
	err   error
}

func (c *classed) Error() string { return c.err.Error() }
func (c *classed) Unwrap() error { return c.err }

// WithClass wraps err with an error class (a short word such as
// "throttled" or "server") that logs, Lanes and operators show instead of
// the generic one ErrorClass would find. Permanent still applies through it.
func WithClass(class string, err error) error {
	if err == nil {
		return nil
	}
	return &classed{class, err}
}

// Error classes ErrorClass returns when no sink set one with WithClass.
const (
	ClassPermanent = "permanent" // marked with Permanent
	ClassTimeout   = "timeout"   // a deadline passed
	ClassNetwork   = "network"   // the system could not be reached
	ClassOther     = "error"     // anything else
)

// ErrorClass names the kind of failure err is: the class set with
// WithClass, else ClassPermanent, ClassTimeout, ClassNetwork or ClassOther.
func ErrorClass(err error) string {
	var c *classed
	if errors.As(err, &c) {
		return c.class
	}
	var ne net.Error
	switch {
	case IsPermanent(err):
		return ClassPermanent
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	case errors.As(err, new(*net.OpError)), errors.As(err, new(*net.DNSError)):
		return ClassNetwork
	}
	return ClassOther
}
