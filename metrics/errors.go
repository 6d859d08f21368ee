package metrics

import "errors"

// ErrOptions is returned by NewCollector for invalid Options; the message
// names the field.
var ErrOptions = errors.New("metrics: invalid options")

// ErrNoSource is returned by NewCollector when Options name nothing to
// collect.
var ErrNoSource = errors.New("metrics: no source to collect from")
