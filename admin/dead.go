package admin

import (
	"errors"
	"fmt"

	"github.com/zest-stm/zest/effectqueue"
)

// The actions on dead letters: replay or discard one, or every one of a key
// (or all) in sequence order.

func (h *handler) replayOne(r *Request) (any, error) {
	name, q, err := h.queue(r)
	if err != nil {
		return nil, err
	}
	seq, err := parseSeq(r.Param("seq"))
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
	n, err := q.Replay(r.Context(), seq)
	if err != nil {
		return nil, h.queueActionErr(name, "replay", seq, err)
	}
	return ReplayResult{Seq: seq, NewSeq: n}, nil
}

func (h *handler) discardOne(r *Request) (any, error) {
	name, q, err := h.queue(r)
	if err != nil {
		return nil, err
	}
	seq, err := parseSeq(r.Param("seq"))
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
	if err := q.Discard(r.Context(), seq); err != nil {
		return nil, h.queueActionErr(name, "discard", seq, err)
	}
	return ReplayResult{Seq: seq}, nil
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
	var after uint64
	for {
		dls, err := q.DeadLetters(r.Context(), after, 1000)
		if err != nil {
			return "", nil, br, nil, fmt.Errorf("admin: queue %q: listing dead letters: %w", name, err)
		}
		for _, d := range dls {
			if br.All || d.Key == *br.Key {
				seqs = append(seqs, d.Seq)
			}
		}
		if len(dls) < 1000 {
			break
		}
		after = dls[len(dls)-1].Seq
	}
	return name, q, br, seqs, nil
}

// replayBatch replays the selected dead letters in sequence order, so that
// a key's entries reach the tail of the queue in their original order.
func (h *handler) replayBatch(r *Request) (any, error) {
	name, q, br, seqs, err := h.batchTargets(r)
	if err != nil {
		return nil, err
	}
	res := BatchResult{DryRun: br.DryRun, Done: []ReplayResult{}}
	for _, s := range seqs {
		if br.DryRun {
			res.Done = append(res.Done, ReplayResult{Seq: s})
			continue
		}
		n, err := q.Replay(r.Context(), s)
		if err != nil {
			res.Error = h.queueActionErr(name, "replay", s, err).Error()
			break
		}
		res.Done = append(res.Done, ReplayResult{Seq: s, NewSeq: n})
	}
	return res, nil
}

func (h *handler) discardBatch(r *Request) (any, error) {
	name, q, br, seqs, err := h.batchTargets(r)
	if err != nil {
		return nil, err
	}
	res := BatchResult{DryRun: br.DryRun, Done: []ReplayResult{}}
	for _, s := range seqs {
		if !br.DryRun {
			if err := q.Discard(r.Context(), s); err != nil {
				res.Error = h.queueActionErr(name, "discard", s, err).Error()
				break
			}
		}
		res.Done = append(res.Done, ReplayResult{Seq: s})
	}
	return res, nil
}
