package stm

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/internal/seam"
)

// numbered is a small Participant: it numbers each staged record with a
// counter, the way the effect queue does, and stages the payloads added in
// the attempt.
type numbered struct {
	q       *numberLog
	pending [][]byte
	first   uint64 // first number staged, for Unstage
}

func (n *numbered) Mark() int           { return len(n.pending) }
func (n *numbered) RollbackTo(mark int) { n.pending = n.pending[:mark] }
func (n *numbered) End(bool)            {}
func (n *numbered) Pending() bool       { return len(n.pending) > 0 }
func (n *numbered) Stage(c *seam.Commit) {
	n.first = n.q.next
	for _, p := range n.pending {
		key := binary.BigEndian.AppendUint64(nil, n.q.next)
		n.q.next++
		c.Add(seam.Record{Key: key, Value: p})
	}
}
func (n *numbered) Unstage(*seam.Commit) { n.q.next = n.first }

type numberedKey struct{}

func add(tx *Tx, q *numberLog, payload []byte) {
	n := tx.local(numberedKey{}, func() seam.Local { return &numbered{q: q} }).(*numbered)
	n.pending = append(n.pending, payload)
}

// numberLog is an in-memory Log that writes in groups from one goroutine.
type numberLog struct {
	next uint64 // guarded by the commit sequencer

	mu struct {
		sync.Mutex
		queue    []*pendingCommit
		written  []*seam.Commit
		failNext error // fail the next group write
	}
	failAppend error
	wake       chan struct{}
	db         *DB // told what is durable
}

type pendingCommit struct {
	c    *seam.Commit
	done chan error
}

func (p *pendingCommit) Wait() error { return <-p.done }

func newNumberLog(db *DB) *numberLog {
	return &numberLog{wake: make(chan struct{}, 1), db: db}
}

func (l *numberLog) Append(c *seam.Commit) (seam.Waiter, error) {
	if l.failAppend != nil {
		return nil, l.failAppend
	}
	p := &pendingCommit{c: c, done: make(chan error, 1)}
	l.mu.Lock()
	l.mu.queue = append(l.mu.queue, p)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return p, nil
}

func (l *numberLog) run(ctx context.Context) {
	for {
		select {
		case <-l.wake:
		case <-ctx.Done():
			return
		}
		l.mu.Lock()
		group := l.mu.queue
		l.mu.queue = nil
		err := l.mu.failNext
		l.mu.failNext = nil
		if err == nil {
			for _, p := range group {
				l.mu.written = append(l.mu.written, p.c)
			}
		}
		l.mu.Unlock()
		if err == nil && len(group) > 0 {
			l.db.dur.durable(group[len(group)-1].c.Version)
		}
		for _, p := range group {
			p.done <- err
		}
	}
}

// TestDurableSeamOrder: concurrent transactions increment a counter and add
// its new value as a record. The log must receive records numbered without
// gaps, in the counter's order (the serialization order), and only from
// committed transactions.
func TestDurableSeamOrder(t *testing.T) {
	db, _ := Open(nil)
	l := newNumberLog(db)
	require.NoError(t, db.attachLog(l))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.run(ctx)
	counter := NewVar(nil, uint64(0))
	var wg sync.WaitGroup
	errRollback := errors.New("rollback")
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				_ = db.Run(context.Background(), func(tx *Tx) error {
					x, _ := counter.Load(tx)
					counter.Store(tx, x+1)
					add(tx, l, binary.BigEndian.AppendUint64(nil, x+1))
					if (g+i)%7 == 0 {
						_ = tx.Savepoint(func(tx *Tx) error {
							add(tx, l, []byte("rolled back savepoint"))
							return errRollback
						})
					}
					if (g+i)%11 == 0 {
						return errRollback
					}
					return nil
				})
			}
		})
	}
	wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	var seq, val uint64
	for _, c := range l.mu.written {
		for _, r := range c.Records {
			seq++
			require.Equal(t, seq, binary.BigEndian.Uint64(r.Key)+1, "gap or reuse in numbering")
			require.Len(t, r.Value, 8, "a rolled-back record reached the log")
			v := binary.BigEndian.Uint64(r.Value)
			require.Greater(t, v, val, "records out of serialization order")
			val = v
		}
	}
	x, _ := RunValue(context.Background(), db, func(tx *Tx) (uint64, error) { x, _ := counter.Load(tx); return x, nil })
	assert.Equal(t, x, val, "every committed increment reached the log")
	assert.Equal(t, x, seq)
}

// TestDurableSeamAppendFails: the transaction rolls back cleanly, nothing
// is published and the numbering is undone.
func TestDurableSeamAppendFails(t *testing.T) {
	db, _ := Open(nil)
	l := newNumberLog(db)
	require.NoError(t, db.attachLog(l))
	l.failAppend = errors.New("log closed")
	v := NewVar(nil, 1)
	rolledBack := false
	err := db.Run(context.Background(), func(tx *Tx) error {
		v.Store(tx, 2)
		add(tx, l, []byte("x"))
		tx.local("probe", func() seam.Local { return endProbe{&rolledBack} })
		return nil
	})
	assert.ErrorContains(t, err, "log closed")
	assert.True(t, rolledBack)
	assert.Equal(t, uint64(0), l.next)
	x, _ := RunValue(context.Background(), db, func(tx *Tx) (int, error) { x, _ := v.Load(tx); return x, nil })
	assert.Equal(t, 1, x)
	assert.NoError(t, db.Err())
}

type endProbe struct{ rolledBack *bool }

func (endProbe) Mark() int            { return 0 }
func (endProbe) RollbackTo(int)       {}
func (p endProbe) End(committed bool) { *p.rolledBack = !committed }

// TestDurableSeamWriteFails: a failed write stops the DB with the cause.
func TestDurableSeamWriteFails(t *testing.T) {
	db, _ := Open(nil)
	l := newNumberLog(db)
	require.NoError(t, db.attachLog(l))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.run(ctx)
	l.mu.Lock()
	l.mu.failNext = errors.New("disk on fire")
	l.mu.Unlock()
	err := db.Run(context.Background(), func(tx *Tx) error { add(tx, l, []byte("x")); return nil })
	assert.ErrorIs(t, err, ErrOutcomeUnknown)
	assert.ErrorContains(t, err, "disk on fire")
	assert.ErrorIs(t, db.Err(), ErrStopped)
	v := NewVar(nil, 0)
	err = db.Run(context.Background(), func(tx *Tx) error { v.Store(tx, 1); return nil })
	assert.ErrorIs(t, err, ErrStopped)
	assert.ErrorContains(t, err, "disk on fire")
}

func TestNoLog(t *testing.T) {
	db, _ := Open(nil)
	err := db.Run(context.Background(), func(tx *Tx) error { add(tx, newNumberLog(db), []byte("x")); return nil })
	assert.ErrorIs(t, err, ErrNoLog)
}
