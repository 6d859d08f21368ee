package admin

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/zest-stm/zest/effectqueue"
)

// The actions on dead letters: replay or discard one, or every one of a key
// (or all) in sequence order. Replay and discard differ only in the queue
// call; deadAction and deadBatch hold what they share.

// deadActionFunc acts on dead letter seq of q: it returns the new sequence
// number of a replay, 0 for a discard.
type deadActionFunc func(ctx context.Context, q *effectqueue.Queue, seq uint64) (uint64, error)

func replayDead(ctx context.Context, q *effectqueue.Queue, seq uint64) (uint64, error) {
	return q.Replay(ctx, seq)
}

func discardDead(ctx context.Context, q *effectqueue.Queue, seq uint64) (uint64, error) {
	return 0, q.Discard(ctx, seq)
}

// deadAction returns the handler of an action on the one dead letter that
// the request names. It changes nothing unless the request is well formed
// and the entry is a dead letter (404 if there is none, 409 if it is
// pending).
func (h *handler) deadAction(verb string, act deadActionFunc) func(*Request) (any, error) {
	return func(r *Request) (any, error) {
		name, q, seq, err := h.queueEntry(r)
		if err != nil {
			return nil, err
		}
		if err := onlyParams(r); err != nil {
			return nil, err
		}
		if err := r.Decode(&struct{}{}); err != nil {
			return nil, err
		}
		if _, err := h.dead(r.Context(), name, q, seq); err != nil {
			return nil, err
		}
		n, err := act(r.Context(), q, seq)
		if err != nil {
			return nil, h.queueActionErr(name, verb, seq, err)
		}
		return ReplayResult{Seq: seq, NewSeq: n}, nil
	}
}

// deadBatch returns the handler of an action on the dead letters a
// batchRequest selects, in sequence order (so that a key's replayed
// entries reach the tail of the queue in their original order). It stops
// at the first failure and says so in BatchResult.Error, after what was
// done.
func (h *handler) deadBatch(verb string, act deadActionFunc) func(*Request) (any, error) {
	return func(r *Request) (any, error) {
		name, q, br, seqs, err := h.batchTargets(r)
		if err != nil {
			return nil, err
		}
		res := BatchResult{DryRun: br.DryRun, Done: []ReplayResult{}}
		for _, s := range seqs {
			var n uint64
			if !br.DryRun {
				if n, err = act(r.Context(), q, s); err != nil {
					res.Error = h.queueActionErr(name, verb, s, err).Error()
					break
				}
			}
			res.Done = append(res.Done, ReplayResult{Seq: s, NewSeq: n})
		}
		return res, nil
	}
}

func (h *handler) queueActionErr(name, action string, seq uint64, err error) error {
	if errors.Is(err, effectqueue.ErrNotFound) {
		// Another operator got there first.
		return fmt.Errorf("%w: queue %q has no dead letter %d any more", ErrNotFound, name, seq)
	}
	return fmt.Errorf("admin: queue %q: %s %d: %v", name, action, seq, err)
}

// batchRequest selects the dead letters of a batch action.
type batchRequest struct {
	// Key selects the dead letters of one ordering key.
	Key *string `json:"key"`
	// All selects every dead letter; it excludes Key.
	All bool `json:"all"`
	// DryRun lists what would be done and changes nothing.
	DryRun bool `json:"dryRun"`
}

func (h *handler) batchTargets(r *Request) (string, *effectqueue.Queue, batchRequest, []uint64, error) {
	var br batchRequest
	name, q, err := h.queue(r)
	if err != nil {
		return "", nil, br, nil, err
	}
	if err := onlyParams(r); err != nil {
		return "", nil, br, nil, err
	}
	if err := r.Decode(&br); err != nil {
		return "", nil, br, nil, err
	}
	if (br.Key == nil) == !br.All {
		return "", nil, br, nil, fmt.Errorf(`%w: a batch action needs exactly one of {"key": "..."} and {"all": true}`, ErrBadRequest)
	}
	var seqs []uint64
	err = eachDead(r.Context(), q, deadPage, math.MaxInt, func(d effectqueue.DeadLetter) bool {
		if br.All || d.Key == *br.Key {
			seqs = append(seqs, d.Seq)
		}
		return true
	})
	if err != nil {
		return "", nil, br, nil, fmt.Errorf("admin: queue %q: listing dead letters: %w", name, err)
	}
	return name, q, br, seqs, nil
}

// deadPage is how many dead letters eachDead reads at a time.
const deadPage = 1000

// eachDead calls fn on q's dead letters in sequence order, reading at most
// limit of them, page at a time, until fn returns false.
func eachDead(ctx context.Context, q *effectqueue.Queue, page, limit int, fn func(effectqueue.DeadLetter) bool) error {
	var after uint64
	for read := 0; read < limit; {
		want := min(page, limit-read)
		dls, err := q.DeadLetters(ctx, after, want)
		if err != nil {
			return err
		}
		for _, d := range dls {
			if !fn(d) {
				return nil
			}
		}
		if len(dls) < want {
			return nil
		}
		read += len(dls)
		after = dls[len(dls)-1].Seq
	}
	return nil
}
