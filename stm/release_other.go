//go:build !amd64 || race

package stm

import "sync/atomic"

// storeRelease stores v in *p, with at least release ordering (see the
// amd64 version); here it is the atomic store.
func storeRelease(p *atomic.Uint64, v uint64) { p.Store(v) }
