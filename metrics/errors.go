package metrics

import "errors"

// ErrOptions is returned by NewCollector for invalid Options; the message
// names the field.
var ErrOptions = errors.New("metrics: invalid options")

// ErrNoSource is returned by NewCollector when Options name nothing to
// collect.
var ErrNoSource = errors.New("metrics: no source to collect from")

// ErrSourcePanicked is the error of a metric whose source (a Mover,
// SagaSource or IdemSource the application supplied) panicked during a
// scrape. The panic is recovered and logged; the scrape reports the metric
// as failed.
var ErrSourcePanicked = errors.New("metrics: source panicked")
