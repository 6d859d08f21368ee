package admin

import (
	"context"
	"fmt"
	"slices"
)

// maxLanes bounds the lanes a summary lists, and lanesScan the pending
// entries read to find them: a summary must stay cheap with a long backlog.
const (
	maxLanes  = 100
	lanesScan = 2000
)

// lanes returns the state of the queue's ordering keys: for each key with
// pending entries among the first lanesScan, its head entry and the retry
// state the mover persisted for it. Failing lanes come first, then by
// sequence number.
func (h *handler) lanes(ctx context.Context, name string) ([]LaneState, error) {
	q := h.opts.Queues[name]
	items, err := q.Read(ctx, 0, lanesScan)
	if err != nil {
		return nil, fmt.Errorf("admin: queue %q: reading entries: %w", name, err)
	}
	byKey := map[string]int{}
	var out []LaneState
	for _, it := range items {
		if i, ok := byKey[it.Key]; ok {
			out[i].Pending++
			continue
		}
		l := LaneState{Key: it.Key, Seq: it.Seq, Kind: it.Kind, Pending: 1}
		if rs, err := q.RetryStateOf(it.Seq); err == nil && rs.Attempts > 0 {
			l.Attempts, l.LastError, l.Failing = rs.Attempts, rs.LastError, true
			if !rs.NextAt.IsZero() {
				t := rs.NextAt
				l.NextRetry = &t
			}
		}
		byKey[it.Key] = len(out)
		out = append(out, l)
	}
	slices.SortStableFunc(out, func(a, b LaneState) int {
		if a.Failing != b.Failing {
			if a.Failing {
				return -1
			}
			return 1
		}
		return 0
	})
	if len(out) > maxLanes {
		out = out[:maxLanes]
	}
	return out, nil
}
