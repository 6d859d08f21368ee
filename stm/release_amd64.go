//go:build !race

package stm

import (
	"sync/atomic"
	"unsafe"
)

// storeRelease stores v in *p with release ordering: what the goroutine
// wrote before is visible to a goroutine whose load sees v. On amd64 a
// plain MOV is a release store (stores are not reordered with older
// stores), and the call to an assembly function keeps the compiler from
// moving memory accesses across it; atomic.Uint64.Store, sequentially
// consistent, costs an XCHG, a locked instruction. Under the race detector,
// which must see the synchronisation, the atomic store is used instead.
//
// Use it only for a word whose writes a lock or an owner orders (a place's
// state word, a locked cell's value and version).
func storeRelease(p *atomic.Uint64, v uint64) { storeRelease64((*uint64)(unsafe.Pointer(p)), v) }

//go:noescape
func storeRelease64(p *uint64, v uint64)
