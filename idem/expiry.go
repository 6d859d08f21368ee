package idem

import (
	"container/heap"
	"sync"
	"time"
)

// expiryIndex finds the tokens that expire first without looking at the
// others. Time is cut into buckets of width granularity; bucket b holds the
// keys of tokens whose expiry falls in [b*w, (b+1)*w), and a min-heap of
// bucket numbers gives the oldest bucket at once. A bucket is due when its
// end has passed, so every token in it has expired, unless it was renewed or
// removed since (the sweeper checks each token's own expiry, so the index
// may hold stale keys; it must never miss a live one).
//
// The index is derived, in-memory state. Keys are added when the
// transaction that wrote their token has committed (by its txState's End),
// after the token is visible, so the sweeper never looks for a token before
// its transaction committed. A durable Tokens rebuilds it from the loaded
// tokens when it opens.
//
// Rejected design: an index table keyed by (expiry, key) in the same
// transaction. The in-memory table has no ordered scan, and a shared
// per-bucket record would make every Begin of the same second conflict.
type expiryIndex struct {
	width int64 // nanoseconds

	mu struct {
		sync.Mutex
		buckets map[int64]*bucket
		order   bucketHeap // bucket numbers present in buckets
		n       int        // keys in buckets
		// last is the bucket added to last, and lastNum its number:
		// tokens begun together expire together, so most adds go to it
		// without a map lookup.
		last    *bucket
		lastNum int64
	}
	// wake has room for one signal: a bucket earlier than the ones the
	// sweeper knew about was added.
	wake chan struct{}
}

// bucket holds its keys in chunks of at most chunkSize, so that a bucket
// of many keys grows without copying them and keeps little spare room.
type bucket struct {
	chunks [][]string
	n      int
}

// chunkSize is the default SweepBatch, so that a full chunk is one sweep.
const chunkSize = 256

func newExpiryIndex(width time.Duration) *expiryIndex {
	ix := &expiryIndex{width: int64(width), wake: make(chan struct{}, 1)}
	ix.mu.buckets = make(map[int64]*bucket)
	return ix
}

func (ix *expiryIndex) bucket(expires int64) int64 { return expires / ix.width }

// add indexes key, which expires at expires (Unix ns).
func (ix *expiryIndex) add(key string, expires int64) {
	b := ix.bucket(expires)
	ix.mu.Lock()
	bk := ix.mu.last
	earliest := false
	if bk == nil || ix.mu.lastNum != b {
		bk = ix.mu.buckets[b]
		if bk == nil {
			bk = new(bucket)
			ix.mu.buckets[b] = bk
			earliest = len(ix.mu.order) == 0 || b < ix.mu.order[0]
			heap.Push(&ix.mu.order, b)
		}
		ix.mu.last, ix.mu.lastNum = bk, b
	}
	bk.push(key)
	ix.mu.n++
	ix.mu.Unlock()
	if earliest {
		select {
		case ix.wake <- struct{}{}:
		default:
		}
	}
}

func (bk *bucket) push(key string) {
	n := len(bk.chunks)
	if n == 0 || len(bk.chunks[n-1]) == cap(bk.chunks[n-1]) {
		// A bucket's first chunk starts small: most buckets of a lightly
		// used table hold a few keys.
		size := chunkSize
		if n == 0 {
			size = 4
		} else if c := cap(bk.chunks[n-1]); c < chunkSize {
			size = 2 * c
			// Move the keys into the larger chunk, to keep one chunk
			// while the bucket is small.
			bk.chunks[n-1] = append(make([]string, 0, size), bk.chunks[n-1]...)
			bk.chunks[n-1] = append(bk.chunks[n-1], key)
			bk.n++
			return
		}
		bk.chunks = append(bk.chunks, make([]string, 0, size))
		n++
	}
	bk.chunks[n-1] = append(bk.chunks[n-1], key)
	bk.n++
}

// popDue removes up to max keys from the oldest bucket if that bucket is
// due at now (its end is not after now), and returns them with the bucket.
func (ix *expiryIndex) popDue(now int64, max int) (b int64, keys []string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if len(ix.mu.order) == 0 {
		return 0, nil
	}
	b = ix.mu.order[0]
	if (b+1)*ix.width > now {
		return 0, nil
	}
	bk := ix.mu.buckets[b]
	// Take whole chunks from the end while they fit, so that the remaining
	// chunks stay as they are. One chunk (a full one is SweepBatch keys by
	// default) is handed over as it is; several are copied into one slice.
	last := len(bk.chunks) - 1
	if c := bk.chunks[last]; len(c) > max {
		// Copy the keys out of the tail: later adds may reuse it.
		keys = append([]string(nil), c[len(c)-max:]...)
		clear(c[len(c)-max:])
		bk.chunks[last] = c[:len(c)-max]
	} else {
		first, n := last, len(c)
		for first > 0 && n+len(bk.chunks[first-1]) <= max {
			first--
			n += len(bk.chunks[first])
		}
		if first == last {
			keys = c
		} else {
			keys = make([]string, 0, n)
			for _, c := range bk.chunks[first:] {
				keys = append(keys, c...)
			}
		}
		clear(bk.chunks[first:])
		bk.chunks = bk.chunks[:first]
	}
	bk.n -= len(keys)
	ix.mu.n -= len(keys)
	if bk.n == 0 {
		delete(ix.mu.buckets, b)
		heap.Pop(&ix.mu.order)
		if ix.mu.last == bk {
			ix.mu.last = nil
		}
	}
	return b, keys
}

// putBack returns keys taken by popDue to bucket b, because the
// transaction that was to look at them did not commit.
func (ix *expiryIndex) putBack(b int64, keys []string) {
	for _, k := range keys {
		ix.add(k, b*ix.width)
	}
}

// next returns the time at which the oldest bucket becomes due, and false
// if the index is empty.
func (ix *expiryIndex) next() (int64, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if len(ix.mu.order) == 0 {
		return 0, false
	}
	return (ix.mu.order[0] + 1) * ix.width, true
}

// len returns the number of keys indexed (stale ones included).
func (ix *expiryIndex) len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.mu.n
}

// bucketHeap is a min-heap of bucket numbers (container/heap).
type bucketHeap []int64

func (h bucketHeap) Len() int           { return len(h) }
func (h bucketHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h bucketHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *bucketHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *bucketHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
