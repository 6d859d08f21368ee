package effectqueue

import "errors"

// ErrInvalidOptions is returned by Open when Options are invalid; the
// error's text names every invalid field.
var ErrInvalidOptions = errors.New("effectqueue: invalid options")

// ErrClosed is returned by Enqueue and the consumer methods after Close.
var ErrClosed = errors.New("effectqueue: queue is closed")

// ErrEmptyKind is returned by Enqueue for an entry without a Kind.
var ErrEmptyKind = errors.New("effectqueue: entry has an empty kind")

// ErrEntryTooLarge is returned by Enqueue for an entry larger than
// Options.MaxEntrySize once encoded.
var ErrEntryTooLarge = errors.New("effectqueue: entry too large")

// ErrTxTooLarge is returned by Enqueue when a transaction's entries would
// no longer fit in one atomic Badger write.
var ErrTxTooLarge = errors.New("effectqueue: transaction's entries exceed one atomic write")

// ErrNotFound is returned for a sequence number that is not pending (for
// Ack of nothing it is not returned: Ack is idempotent) or not dead-lettered.
var ErrNotFound = errors.New("effectqueue: no such entry")

// ErrCorrupt is returned when a stored entry cannot be decoded.
var ErrCorrupt = errors.New("effectqueue: corrupt entry")
