package admin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
)

// QueueSummary is the state of one queue and its mover.
// It is a plain value, safe to copy.
type QueueSummary struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Head is the highest durable sequence number.
	Head uint64 `json:"head"`
	// Depth counts committed entries not yet acked or dead-lettered;
	// OldestAgeSeconds is how long the oldest of them has waited.
	Depth            int64   `json:"depth"`
	OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
	// DeadLetters counts dead letters (the queue keeps the count).
	// DeadLettersCapped is always false since it does; it stays for
	// clients that read it, from when a summary counted at most 1,000.
	DeadLetters       int  `json:"deadLetters"`
	DeadLettersCapped bool `json:"deadLettersCapped,omitempty"`
	// LanesBlocked counts ordering keys whose head entry is failing.
	LanesBlocked int `json:"lanesBlocked"`
	// Lanes are the ordering keys with pending entries, failing ones
	// first (at most maxLanes).
	Lanes []LaneState `json:"lanes"`
	// Mover is nil for a queue without a mover in Options.Movers.
	Mover *MoverSummary `json:"mover,omitempty"`
}

// MoverSummary is the state of a queue's mover.
// It is a plain value, safe to copy.
type MoverSummary struct {
	Paused bool `json:"paused"`
	// Delivered (acked after the sink confirmed), Retries, DeadLettered
	// and Superseded count since the mover was made.
	Delivered    uint64  `json:"delivered"`
	Retries      uint64  `json:"retries"`
	DeadLettered uint64  `json:"deadLettered"`
	Superseded   uint64  `json:"superseded"`
	InFlight     int64   `json:"inFlight"`
	Buffered     int     `json:"buffered"`
	LatencyP50   float64 `json:"latencyP50Seconds"`
	LatencyP99   float64 `json:"latencyP99Seconds"`
	// BySink splits the counters by sink name.
	BySink map[string]SinkSummary `json:"bySink,omitempty"`
}

// SinkSummary counts one sink's outcomes since the mover was made.
// It is a plain value, safe to copy.
type SinkSummary struct {
	Delivered    uint64 `json:"delivered"`
	Retries      uint64 `json:"retries"`
	DeadLettered uint64 `json:"deadLettered"`
}

// LaneState is one ordering key of a mover: its head entry and whether it is
// failing.
// It is a plain value, safe to copy.
type LaneState struct {
	Key          string     `json:"key"`
	Seq          uint64     `json:"seq"`
	Kind         string     `json:"kind"`
	Pending      int        `json:"pending,omitempty"`
	Attempts     int        `json:"attempts"`
	Failing      bool       `json:"failing"`
	ErrorClass   string     `json:"errorClass,omitempty"`
	LastError    string     `json:"lastError,omitempty"`
	FailingSince *time.Time `json:"failingSince,omitempty"`
	NextRetry    *time.Time `json:"nextRetry,omitempty"`
}

// EntrySummary is one pending entry or dead letter in a list.
// It is a plain value, safe to copy.
type EntrySummary struct {
	Seq       uint64    `json:"seq"`
	Kind      string    `json:"kind"`
	Key       string    `json:"key"`
	Size      int       `json:"size"`
	OpID      string    `json:"opId"`
	Committed time.Time `json:"committed"`
	// Pending entries: the mover's persisted retry state.
	Attempts  int        `json:"attempts,omitempty"`
	LastError string     `json:"lastError,omitempty"`
	NextRetry *time.Time `json:"nextRetry,omitempty"`
	// Dead letters: why and when.
	Reason string     `json:"reason,omitempty"`
	DeadAt *time.Time `json:"deadAt,omitempty"`
}

// EntryDetail is one entry with its payload and metadata.
// It is a plain value, safe to copy.
type EntryDetail struct {
	EntrySummary
	// State is "pending" or "dead".
	State   string            `json:"state"`
	Meta    map[string]string `json:"meta,omitempty"`
	Payload Payload           `json:"payload"`
}

// ReplayResult says what a replay did: the dead letter's old sequence
// number and the new one it got at the tail of the queue (0 in a dry run).
// It is a plain value, safe to copy.
type ReplayResult struct {
	Seq    uint64 `json:"seq"`
	NewSeq uint64 `json:"newSeq,omitempty"`
}

// BatchResult is the answer of a batch action (replay or discard of every
// dead letter of a key, or of all).
// It is a plain value, safe to copy.
type BatchResult struct {
	DryRun bool `json:"dryRun"`
	// Done lists the entries acted on (or that would be, in a dry run), in
	// sequence order.
	Done []ReplayResult `json:"done"`
	// Error, when set, stopped the batch after Done.
	Error string `json:"error,omitempty"`
}

func (h *handler) addQueueRoutes() {
	h.add("GET", "queues", h.listQueues)
	h.add("GET", "queues/{q}", h.getQueue)
	h.add("GET", "queues/{q}/entries", h.listEntries)
	h.add("GET", "queues/{q}/entries/{seq}", h.getEntry)
	h.add("GET", "queues/{q}/dead", h.listDead)
	h.add("GET", "queues/{q}/dead/{seq}", h.getDead)
	h.add("POST", "queues/{q}/dead/{seq}/replay", h.deadAction("replay", replayDead))
	h.add("POST", "queues/{q}/dead/{seq}/discard", h.deadAction("discard", discardDead))
	h.add("POST", "queues/{q}/dead/replay", h.deadBatch("replay", replayDead))
	h.add("POST", "queues/{q}/dead/discard", h.deadBatch("discard", discardDead))
	h.add("POST", "queues/{q}/mover/pause", h.pauseMover)
	h.add("POST", "queues/{q}/mover/resume", h.resumeMover)
}

func (h *handler) queue(r *Request) (string, *effectqueue.Queue, error) {
	name := r.Param("q")
	q, ok := h.opts.Queues[name]
	if !ok {
		names := make([]string, 0, len(h.opts.Queues))
		for n := range h.opts.Queues {
			names = append(names, n)
		}
		slices.Sort(names)
		return "", nil, fmt.Errorf("%w: no queue named %q (queues: %q)", ErrNotFound, name, names)
	}
	return name, q, nil
}

// queueEntry returns the queue and the entry number a request names.
func (h *handler) queueEntry(r *Request) (string, *effectqueue.Queue, uint64, error) {
	name, q, err := h.queue(r)
	if err != nil {
		return "", nil, 0, err
	}
	seq, err := parseSeq(r.Param("seq"))
	if err != nil {
		return "", nil, 0, err
	}
	return name, q, seq, nil
}

func parseSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: sequence number %q is not a positive integer", ErrBadRequest, s)
	}
	return n, nil
}

// pagingSeq reads after/limit where after is a sequence number.
func pagingSeq(r *Request) (uint64, int, error) {
	if err := onlyParams(r, "after", "limit", "key", "encoding"); err != nil {
		return 0, 0, err
	}
	a, limit, err := r.Paging(100)
	if err != nil {
		return 0, 0, err
	}
	var after uint64
	if a != "" {
		if after, err = strconv.ParseUint(a, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("%w: after %q is not a sequence number", ErrBadRequest, a)
		}
	}
	return after, limit, nil
}

// onlyParams refuses query parameters other than the allowed ones, so that a
// typo ("lmit") is an error rather than a silently ignored filter.
func onlyParams(r *Request, allowed ...string) error {
	for k := range r.HTTP.URL.Query() {
		if !slices.Contains(allowed, k) {
			return fmt.Errorf("%w: unknown query parameter %q (allowed: %q)", ErrBadRequest, k, allowed)
		}
	}
	return nil
}

func (h *handler) listQueues(r *Request) (any, error) {
	if err := onlyParams(r); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(h.opts.Queues))
	for n := range h.opts.Queues {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]QueueSummary, 0, len(names))
	for _, n := range names {
		s, err := h.summary(r.Context(), n)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (h *handler) getQueue(r *Request) (any, error) {
	name, _, err := h.queue(r)
	if err != nil {
		return nil, err
	}
	if err := onlyParams(r); err != nil {
		return nil, err
	}
	return h.summary(r.Context(), name)
}

func (h *handler) summary(ctx context.Context, name string) (QueueSummary, error) {
	q := h.opts.Queues[name]
	st := q.Stats()
	s := QueueSummary{Name: name, ID: q.ID(), Head: st.Head, Depth: st.Depth, OldestAgeSeconds: st.OldestAge.Seconds(),
		DeadLetters: int(st.DeadLetters)}
	if m := h.opts.Movers[name]; m != nil {
		s.Mover = moverSummary(m)
	}
	lanes, blocked, err := h.lanes(ctx, name)
	if err != nil {
		return s, err
	}
	s.Lanes, s.LanesBlocked = lanes, blocked
	return s, nil
}

func moverSummary(m *mover.Mover) *MoverSummary {
	st := m.Stats()
	ms := &MoverSummary{
		Delivered: st.Delivered, Retries: st.Retries, DeadLettered: st.DeadLettered, Superseded: st.Superseded,
		InFlight: st.InFlight, Buffered: st.Buffered, Paused: st.Paused,
		LatencyP50: st.LatencyP50.Seconds(), LatencyP99: st.LatencyP99.Seconds(),
	}
	if len(st.BySink) > 0 {
		ms.BySink = make(map[string]SinkSummary, len(st.BySink))
		for name, ss := range st.BySink {
			ms.BySink[name] = SinkSummary{Delivered: ss.Delivered, Retries: ss.Retries, DeadLettered: ss.DeadLettered}
		}
	}
	return ms
}

func summarize(it effectqueue.Item) EntrySummary {
	return EntrySummary{Seq: it.Seq, Kind: it.Kind, Key: it.Key, Size: len(it.Payload), OpID: it.OpID, Committed: it.Committed}
}

// pendingSummary summarizes a pending entry with the mover's persisted
// retry state, if it has failed.
func pendingSummary(q *effectqueue.Queue, it effectqueue.Item) EntrySummary {
	s := summarize(it)
	if rs, err := q.RetryStateOf(it.Seq); err == nil && rs.Attempts > 0 {
		s.Attempts, s.LastError, s.NextRetry = rs.Attempts, rs.LastError, timePtr(rs.NextAt)
	}
	return s
}

func (h *handler) listEntries(r *Request) (any, error) {
	name, q, err := h.queue(r)
	if err != nil {
		return nil, err
	}
	after, limit, err := pagingSeq(r)
	if err != nil {
		return nil, err
	}
	key, filter := r.HTTP.URL.Query()["key"]
	items, err := q.Read(r.Context(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("admin: queue %q: reading entries: %w", name, err)
	}
	p := Page[EntrySummary]{Items: []EntrySummary{}}
	for _, it := range items {
		if filter && it.Key != key[0] {
			continue
		}
		p.Items = append(p.Items, pendingSummary(q, it))
	}
	if len(items) == limit {
		p.Next = strconv.FormatUint(items[len(items)-1].Seq, 10)
	}
	return p, nil
}

func deadSummary(d effectqueue.DeadLetter) EntrySummary {
	s := summarize(d.Item)
	s.Reason = d.Reason
	t := d.At
	s.DeadAt = &t
	return s
}

func (h *handler) listDead(r *Request) (any, error) {
	name, q, err := h.queue(r)
	if err != nil {
		return nil, err
	}
	after, limit, err := pagingSeq(r)
	if err != nil {
		return nil, err
	}
	key, filter := r.HTTP.URL.Query()["key"]
	dls, err := q.DeadLetters(r.Context(), after, limit)
	if err != nil {
		return nil, fmt.Errorf("admin: queue %q: listing dead letters: %w", name, err)
	}
	p := Page[EntrySummary]{Items: []EntrySummary{}}
	for _, d := range dls {
		if filter && d.Key != key[0] {
			continue
		}
		p.Items = append(p.Items, deadSummary(d))
	}
	if len(dls) == limit {
		p.Next = strconv.FormatUint(dls[len(dls)-1].Seq, 10)
	}
	return p, nil
}

// findPending returns pending entry seq, or nil.
func findPending(ctx context.Context, q *effectqueue.Queue, seq uint64) (*effectqueue.Item, error) {
	items, err := q.Read(ctx, seq-1, 1)
	if err != nil {
		return nil, err
	}
	if len(items) == 1 && items[0].Seq == seq {
		return &items[0], nil
	}
	return nil, nil
}

// findDead returns dead letter seq, or nil.
func findDead(ctx context.Context, q *effectqueue.Queue, seq uint64) (*effectqueue.DeadLetter, error) {
	dls, err := q.DeadLetters(ctx, seq-1, 1)
	if err != nil {
		return nil, err
	}
	if len(dls) == 1 && dls[0].Seq == seq {
		return &dls[0], nil
	}
	return nil, nil
}

func (h *handler) getEntry(r *Request) (any, error) {
	name, q, seq, err := h.queueEntry(r)
	if err != nil {
		return nil, err
	}
	enc, err := encodingParam(r)
	if err != nil {
		return nil, err
	}
	it, err := findPending(r.Context(), q, seq)
	if err != nil {
		return nil, fmt.Errorf("admin: queue %q: reading entry %d: %w", name, seq, err)
	}
	if it == nil {
		if d, err := findDead(r.Context(), q, seq); err == nil && d != nil {
			return h.detail(deadSummary(*d), "dead", d.Item, enc), nil
		}
		return nil, fmt.Errorf("%w: queue %q has no pending entry %d (acked, discarded, replayed, or beyond the head %d)", ErrNotFound, name, seq, q.Head())
	}
	return h.detail(pendingSummary(q, *it), "pending", *it, enc), nil
}

func (h *handler) getDead(r *Request) (any, error) {
	name, q, seq, err := h.queueEntry(r)
	if err != nil {
		return nil, err
	}
	enc, err := encodingParam(r)
	if err != nil {
		return nil, err
	}
	d, err := h.dead(r.Context(), name, q, seq)
	if err != nil {
		return nil, err
	}
	return h.detail(deadSummary(*d), "dead", d.Item, enc), nil
}

func encodingParam(r *Request) (string, error) {
	if err := onlyParams(r, "encoding"); err != nil {
		return "", err
	}
	switch e := r.Query("encoding"); e {
	case "", "base64", "hex":
		return e, nil
	default:
		return "", fmt.Errorf("%w: encoding %q is not base64 or hex", ErrBadRequest, e)
	}
}

// dead returns dead letter seq, or an error saying why it is not one: 409 for
// an entry that is pending, 404 otherwise.
func (h *handler) dead(ctx context.Context, name string, q *effectqueue.Queue, seq uint64) (*effectqueue.DeadLetter, error) {
	d, err := findDead(ctx, q, seq)
	if err != nil {
		return nil, fmt.Errorf("admin: queue %q: reading dead letter %d: %w", name, seq, err)
	}
	if d != nil {
		return d, nil
	}
	if it, err := findPending(ctx, q, seq); err == nil && it != nil {
		return nil, fmt.Errorf("%w: entry %d of queue %q is pending, not a dead letter", ErrConflict, seq, name)
	}
	return nil, fmt.Errorf("%w: queue %q has no dead letter %d", ErrNotFound, name, seq)
}

func (h *handler) detail(s EntrySummary, state string, it effectqueue.Item, enc string) EntryDetail {
	return EntryDetail{EntrySummary: s, State: state, Meta: it.Meta, Payload: h.renderPayload(it, enc)}
}
