package mover

import (
	"context"
	"sync"
	"time"

	"github.com/zest-stm/zest/effectqueue"
)

// store is what the mover needs of an effect queue. *effectqueue.Queue
// implements it; tests wrap it to inject failures of the mover's own state
// writes.
type store interface {
	ID() string
	Read(ctx context.Context, after uint64, limit int) ([]effectqueue.Item, error)
	Notify() <-chan struct{}
	Ack(ctx context.Context, seqs ...uint64) error
	DeadLetter(ctx context.Context, seq uint64, reason string) error
	SetRetryState(ctx context.Context, seq uint64, s effectqueue.RetryState) error
	RetryStateOf(seq uint64) (effectqueue.RetryState, error)
	ConsumerState(name string) (uint64, error)
	SetConsumerState(ctx context.Context, name string, v uint64) error
	Depth() int64
	OldestAge() time.Duration
}

// claims holds the queues that have a Mover in this process (see
// ErrQueueTaken).
var claims struct {
	sync.Mutex
	by map[*effectqueue.Queue]*Mover
}

func claim(q *effectqueue.Queue, m *Mover) error {
	claims.Lock()
	defer claims.Unlock()
	if claims.by == nil {
		claims.by = make(map[*effectqueue.Queue]*Mover)
	}
	if _, taken := claims.by[q]; taken {
		return ErrQueueTaken
	}
	claims.by[q] = m
	return nil
}

// unclaim releases m's queue, if m holds it. It is idempotent.
func unclaim(q *effectqueue.Queue, m *Mover) {
	claims.Lock()
	defer claims.Unlock()
	if claims.by[q] == m {
		delete(claims.by, q)
	}
}
