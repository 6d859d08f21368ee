package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
)

// ledgerService is a real HTTP service on 127.0.0.1 for the crash tests:
// it applies each operation id once (counting every request by its
// idempotency key), keeps a tombstone for each undo so that a late forward
// request is refused, answers "did it land?", and fails on a schedule:
// 503s, answers that come after the client's timeout, connections cut after
// the effect was applied, permanent rejections for some sagas, and undos that
// never succeed for others (those sagas end stuck).
type ledgerService struct {
	srv *http.Server
	url string

	mu struct {
		sync.Mutex
		n        int                     // requests served
		ops      map[string]*ledgerOp    // forward OpID → its record
		keys     map[string]int          // idempotency key → requests
		failures bool                    // the schedule of faults is on
		hook     func(event, run string) // kill points; may be nil
	}
}

// ledgerOp is what the service knows about one forward operation.
type ledgerOp struct {
	Saga, Step  string
	Applied     int  // times the effect was applied (must stay ≤ 1)
	Tombstone   bool // an undo was received
	UndoApplied bool // the undo reversed an applied effect
	Requests    int
	UndoRequest int
}

func startLedger() (*ledgerService, error) {
	s := &ledgerService{}
	s.mu.ops = map[string]*ledgerOp{}
	s.mu.keys = map[string]int{}
	s.mu.failures = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /do", s.do)
	mux.HandleFunc("POST /undo", s.undo)
	mux.HandleFunc("GET /status", s.status)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.url = "http://" + ln.Addr().String()
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *ledgerService) close() { _ = s.srv.Close() }

func (s *ledgerService) setHook(h func(event, run string)) {
	s.mu.Lock()
	s.mu.hook = h
	s.mu.Unlock()
}

func (s *ledgerService) setFailures(on bool) {
	s.mu.Lock()
	s.mu.failures = on
	s.mu.Unlock()
}

func hash(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// rejects: the stock step of one saga in four is refused (compensation);
// stuckUndo: of those, one in three never manages its price undo (stuck).
func rejects(saga, step string) bool { return step == "stock" && hash(saga)%4 == 0 }
func stuckUndo(saga, step string) bool {
	return step == "price" && hash(saga)%4 == 0 && hash(saga+"!")%3 == 0
}

// fault returns the scheduled fault of request n: "" (none), "503",
// "late" (answer after the client's timeout) or "cut" (connection closed
// after the effect).
func (s *ledgerService) faultLocked() string {
	s.mu.n++
	if !s.mu.failures {
		return ""
	}
	switch n := s.mu.n; {
	case n%7 == 3:
		return "503"
	case n%11 == 5:
		return "late"
	case n%13 == 7:
		return "cut"
	}
	return ""
}

// event reports a kill point of a request sent by child run r.
func (s *ledgerService) event(e string, r *http.Request) {
	s.mu.Lock()
	h := s.mu.hook
	s.mu.Unlock()
	if h != nil {
		h(e, r.Header.Get("X-Run"))
	}
}

func (s *ledgerService) opLocked(op, saga, step string) *ledgerOp {
	o := s.mu.ops[op]
	if o == nil {
		o = &ledgerOp{Saga: saga, Step: step}
		s.mu.ops[op] = o
	}
	return o
}

func (s *ledgerService) do(w http.ResponseWriter, r *http.Request) {
	key, sg, step := r.Header.Get("Idempotency-Key"), r.Header.Get("X-Saga"), r.Header.Get("X-Step")
	s.event("do-arrive", r)
	s.mu.Lock()
	s.mu.keys[key]++
	fault := s.faultLocked()
	o := s.opLocked(key, sg, step)
	o.Requests++
	switch {
	case fault == "503":
		s.mu.Unlock()
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	case rejects(sg, step):
		s.mu.Unlock()
		http.Error(w, "out of stock", http.StatusConflict)
		return
	case o.Tombstone:
		s.mu.Unlock()
		http.Error(w, "cancelled", http.StatusConflict)
		return
	}
	if o.Applied == 0 {
		o.Applied = 1
	}
	s.mu.Unlock()
	s.event("do-applied", r)
	s.answer(w, r, fault)
}

func (s *ledgerService) undo(w http.ResponseWriter, r *http.Request) {
	key, fwd := r.Header.Get("Idempotency-Key"), r.Header.Get("X-Forward")
	sg, step := r.Header.Get("X-Saga"), r.Header.Get("X-Step")
	s.event("undo-arrive", r)
	s.mu.Lock()
	s.mu.keys[key]++
	fault := s.faultLocked()
	o := s.opLocked(fwd, sg, step)
	o.UndoRequest++
	if fault == "503" || stuckUndo(sg, step) {
		s.mu.Unlock()
		http.Error(w, "busy", http.StatusInternalServerError)
		return
	}
	o.Tombstone = true
	if o.Applied == 1 {
		o.UndoApplied = true
	}
	s.mu.Unlock()
	s.event("undo-applied", r)
	s.answer(w, r, fault)
}

func (s *ledgerService) answer(w http.ResponseWriter, r *http.Request, fault string) {
	switch fault {
	case "late":
		// Answer only once the client gave up (its timeout closes the
		// request): the effect landed anyway. The timer bounds a client
		// that never does.
		select {
		case <-r.Context().Done():
		case <-time.After(crashTimeout + 100*time.Millisecond):
		}
	case "cut":
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (s *ledgerService) status(w http.ResponseWriter, r *http.Request) {
	fwd, undo := r.URL.Query().Get("op"), r.URL.Query().Get("undo") == "1"
	s.mu.Lock()
	o := s.mu.ops[fwd]
	landed := o != nil && (undo && o.Tombstone || !undo && o.Applied == 1)
	s.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]bool{"landed": landed})
}

func (s *ledgerService) snapshot() (ops map[string]ledgerOp, keys map[string]int, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops = make(map[string]ledgerOp, len(s.mu.ops))
	for k, o := range s.mu.ops {
		ops[k] = *o
	}
	keys = make(map[string]int, len(s.mu.keys))
	for k, n := range s.mu.keys {
		keys[k] = n
	}
	return ops, keys, s.mu.n
}

// crashTimeout is the per-attempt timeout of the crash flow's calls.
const crashTimeout = 300 * time.Millisecond

// ledgerClient calls the service; errors are classified for saga: 409 is
// permanent, 5xx retryable, a lost connection after sending ambiguous.
type ledgerClient struct {
	url string
	run string // sent as X-Run, so that kill points count only this child's requests
	hc  *http.Client
}

func (c *ledgerClient) post(ctx context.Context, path string, call saga.Call) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Idempotency-Key", call.OpID)
	req.Header.Set("X-Saga", call.Saga)
	req.Header.Set("X-Step", call.Step)
	req.Header.Set("X-Run", c.run)
	if call.Undo {
		req.Header.Set("X-Forward", forwardOp(call.OpID))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return err // never sent
		}
		return saga.Ambiguous(err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusConflict:
		return mover.Permanent(fmt.Errorf("%s: %s", path, resp.Status))
	case resp.StatusCode >= 300:
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

func (c *ledgerClient) landed(ctx context.Context, call saga.Call) (bool, error) {
	op, undo := call.OpID, "0"
	if call.Undo {
		op, undo = forwardOp(call.OpID), "1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/status?op="+url.QueryEscape(op)+"&undo="+undo, nil)
	if err != nil {
		return false, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var out struct{ Landed bool }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return false, err
	}
	return out.Landed, nil
}

func forwardOp(undoOp string) string { return strings.TrimSuffix(undoOp, "/undo") + "/do" }
