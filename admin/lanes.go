package admin

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxLanes bounds the lanes a summary lists, and lanesScan the pending
// entries read to count them: a summary must stay cheap with a long backlog.
const (
	maxLanes  = 100
	lanesScan = 2000
)

// lanes returns the state of the queue's ordering keys, failing ones first,
// and how many are blocked. With a mover, the lanes it is applying or
// retrying come from Mover.Lanes (live: error class, failing since); without
// one, from the retry state persisted with each key's head entry. Pending
// counts come from the first lanesScan pending entries.
func (h *handler) lanes(ctx context.Context, name string) ([]LaneState, int, error) {
	q := h.opts.Queues[name]
	items, err := q.Read(ctx, 0, lanesScan)
	if err != nil {
		return nil, 0, fmt.Errorf("admin: queue %q: reading entries: %w", name, err)
	}
	byKey := map[string]int{}
	out := []LaneState{}
	for _, it := range items {
		if i, ok := byKey[it.Key]; ok {
			out[i].Pending++
			continue
		}
		byKey[it.Key] = len(out)
		out = append(out, LaneState{Key: it.Key, Seq: it.Seq, Kind: it.Kind, Pending: 1})
	}
	blocked := 0
	if m := h.opts.Movers[name]; m != nil {
		for _, ml := range m.Lanes() {
			l := LaneState{Key: ml.Key, Seq: ml.Seq, Kind: ml.Kind, Attempts: ml.Attempts, Failing: ml.Failing,
				ErrorClass: ml.ErrorClass, LastError: ml.LastError, FailingSince: timePtr(ml.FailingSince), NextRetry: timePtr(ml.NextRetry)}
			if i, ok := byKey[ml.Key]; ok {
				l.Pending = out[i].Pending
				out[i] = l
			} else {
				byKey[ml.Key] = len(out)
				out = append(out, l)
			}
		}
		blocked = m.Stats().LanesBlocked
	} else {
		for i := range out {
			rs, err := q.RetryStateOf(out[i].Seq)
			if err != nil || rs.Attempts == 0 {
				continue
			}
			out[i].Attempts, out[i].LastError, out[i].Failing = rs.Attempts, rs.LastError, true
			out[i].NextRetry = timePtr(rs.NextAt)
			blocked++
		}
	}
	slices.SortStableFunc(out, func(a, b LaneState) int {
		if a.Failing != b.Failing {
			if a.Failing {
				return -1
			}
			return 1
		}
		if a.Failing {
			return strings.Compare(a.Key, b.Key)
		}
		return 0
	})
	if len(out) > maxLanes {
		out = out[:maxLanes]
	}
	return out, blocked, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
