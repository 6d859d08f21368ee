package admin

import (
	"fmt"
)

// EngineStats are the stm engine's counters since the DB was opened.
// It is a plain value, safe to copy.
type EngineStats struct {
	Commits   uint64 `json:"commits"`
	Rollbacks uint64 `json:"rollbacks"`
	Panics    uint64 `json:"panics"`
	Canceled  uint64 `json:"canceled"`
	RedoLimit uint64 `json:"redoLimit"`
	// SerialMode counts transactions that escalated to serial mode.
	SerialMode uint64 `json:"serialMode"`
	Reruns     uint64 `json:"reruns"`
	// RerunsByCause splits Reruns by cause ("stale read", ...).
	RerunsByCause map[string]uint64 `json:"rerunsByCause"`
	// Conflicts counts reruns by the table of the record that caused
	// them ("" for records in no table).
	Conflicts   map[string]uint64 `json:"conflicts"`
	AttemptsP50 uint64            `json:"attemptsP50"`
	AttemptsP90 uint64            `json:"attemptsP90"`
	AttemptsP99 uint64            `json:"attemptsP99"`
	AttemptsMax uint64            `json:"attemptsMax"`
}

// Overview is everything the page shows in one answer.
// It is a plain value, safe to copy.
type Overview struct {
	ReadOnly bool           `json:"readOnly"`
	Queues   []QueueSummary `json:"queues"`
	// Stats is nil without Options.DB.
	Stats    *EngineStats  `json:"stats,omitempty"`
	Sections []SectionInfo `json:"sections"`
}

// SectionInfo describes a Section for the page: its name and View.
// It is a plain value, safe to copy.
type SectionInfo struct {
	Name     string      `json:"name"`
	Title    string      `json:"title"`
	Counters string      `json:"counters,omitempty"`
	List     *ListView   `json:"list,omitempty"`
	Lookup   *LookupView `json:"lookup,omitempty"`
}

func (h *handler) addCoreRoutes() {
	h.add("GET", "overview", h.overview)
	h.add("GET", "stats", h.stats)
	h.add("GET", "actions", h.listActions)
}

func (h *handler) engineStats() *EngineStats {
	if h.opts.DB == nil {
		return nil
	}
	st := h.opts.DB.Stats()
	es := &EngineStats{
		Commits: st.Commits, Rollbacks: st.Rollbacks, Panics: st.Panics, Canceled: st.Canceled,
		RedoLimit: st.RedoLimit, SerialMode: st.Escalations, Reruns: st.Reruns,
		RerunsByCause: map[string]uint64{}, Conflicts: map[string]uint64{},
		AttemptsP50: st.AttemptsP50, AttemptsP90: st.AttemptsP90, AttemptsP99: st.AttemptsP99, AttemptsMax: st.AttemptsMax,
	}
	for c, n := range st.RerunsByCause {
		es.RerunsByCause[c.String()] = n
	}
	for t, n := range st.Conflicts {
		es.Conflicts[t] = n
	}
	return es
}

func (h *handler) stats(r *Request) (any, error) {
	if err := onlyParams(r); err != nil {
		return nil, err
	}
	es := h.engineStats()
	if es == nil {
		return nil, fmt.Errorf("%w: no DB in the admin options", ErrNotFound)
	}
	return es, nil
}

func (h *handler) listActions(r *Request) (any, error) {
	if err := onlyParams(r); err != nil {
		return nil, err
	}
	return h.actions(), nil
}

func (h *handler) overview(r *Request) (any, error) {
	if err := onlyParams(r); err != nil {
		return nil, err
	}
	qs, err := h.listQueues(r)
	if err != nil {
		return nil, err
	}
	o := Overview{ReadOnly: h.opts.ReadOnly, Queues: qs.([]QueueSummary), Stats: h.engineStats(), Sections: []SectionInfo{}}
	for _, s := range h.opts.Sections {
		v := s.View()
		o.Sections = append(o.Sections, SectionInfo{Name: s.Name(), Title: v.Title, Counters: v.Counters, List: v.List, Lookup: v.Lookup})
	}
	return o, nil
}
