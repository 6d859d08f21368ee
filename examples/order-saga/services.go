package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// priceService is the outside price system: one price per SKU. Setting a
// price answers the old one; restoring puts an old price back. Both are
// idempotent by the Idempotency-Key header (the saga's OpID), and a restore
// leaves a tombstone so that a late set with its forward OpID is refused.
type priceService struct {
	mu        sync.Mutex
	prices    map[string]int
	done      map[string]int  // OpID → old price answered
	cancelled map[string]bool // forward OpIDs that were restored
	requests  atomic.Int64

	failEvery    int      // every n-th request fails with 503, each call (OpID) at most once (0: never)
	failed       sync.Map // OpID → true: a 503 was injected for it already
	brokenUndo   sync.Map // SKU → true: restores of it fail with 500
	undoFailures atomic.Int64
}

func newPriceService(failEvery int) *priceService {
	return &priceService{prices: map[string]int{}, done: map[string]int{}, cancelled: map[string]bool{}, failEvery: failEvery}
}

func (p *priceService) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /prices/{sku}", func(w http.ResponseWriter, r *http.Request) {
		if p.flaky(w, r) {
			return
		}
		sku, op := r.PathValue("sku"), r.Header.Get("Idempotency-Key")
		price, err := strconv.Atoi(r.URL.Query().Get("price"))
		if err != nil {
			http.Error(w, "bad price", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cancelled[op] {
			http.Error(w, "operation cancelled", http.StatusConflict)
			return
		}
		old, ok := p.done[op]
		if !ok {
			old = p.prices[sku]
			p.prices[sku] = price
			p.done[op] = old
		}
		_ = json.NewEncoder(w).Encode(map[string]int{"old": old})
	})
	mux.HandleFunc("POST /prices/{sku}/restore", func(w http.ResponseWriter, r *http.Request) {
		if p.flaky(w, r) {
			return
		}
		sku := r.PathValue("sku")
		if _, broken := p.brokenUndo.Load(sku); broken {
			p.undoFailures.Add(1)
			http.Error(w, "price history unavailable", http.StatusInternalServerError)
			return
		}
		// The caller sends the price to put back, from its operation log.
		fwd := r.URL.Query().Get("forward")
		old, err := strconv.Atoi(r.URL.Query().Get("price"))
		if err != nil {
			http.Error(w, "bad price", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.cancelled[fwd] {
			p.cancelled[fwd] = true
			if _, ok := p.done[fwd]; ok { // never happened: nothing to restore
				p.prices[sku] = old
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /ops", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		old, landed := p.done[r.URL.Query().Get("op")]
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"landed": landed, "old": old})
	})
	return mux
}

// flaky injects a 503 into every failEvery-th request, but never twice into
// the requests of one call (OpID): a retry then succeeds, so the outcome of
// each saga does not depend on how the concurrent sagas' requests interleave.
func (p *priceService) flaky(w http.ResponseWriter, r *http.Request) bool {
	n := p.requests.Add(1)
	if p.failEvery <= 0 || n%int64(p.failEvery) != 0 {
		return false
	}
	if _, again := p.failed.LoadOrStore(r.Header.Get("Idempotency-Key"), true); !again {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return true
	}
	return false
}

func (p *priceService) price(sku string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prices[sku]
}

// stockService is the outside stock system: units on hand per SKU.
// Taking more than is on hand is refused for good (409).
type stockService struct {
	mu        sync.Mutex
	onHand    map[string]int
	done      map[string]int // OpID → units taken
	cancelled map[string]bool
	requests  atomic.Int64
}

func newStockService() *stockService {
	return &stockService{onHand: map[string]int{}, done: map[string]int{}, cancelled: map[string]bool{}}
}

func (s *stockService) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stock/{sku}/take", func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		sku, op := r.PathValue("sku"), r.Header.Get("Idempotency-Key")
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n <= 0 {
			http.Error(w, "bad quantity", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cancelled[op] {
			http.Error(w, "operation cancelled", http.StatusConflict)
			return
		}
		if _, ok := s.done[op]; !ok {
			if s.onHand[sku] < n {
				http.Error(w, "out of stock", http.StatusConflict)
				return
			}
			s.onHand[sku] -= n
			s.done[op] = n
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /stock/{sku}/return", func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		sku, fwd := r.PathValue("sku"), r.URL.Query().Get("forward")
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.cancelled[fwd] {
			s.cancelled[fwd] = true
			s.onHand[sku] += s.done[fwd] // 0 if it never happened
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

func (s *stockService) units(sku string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.onHand[sku]
}

// serve starts h on a free port of 127.0.0.1 and returns its base URL.
func serve(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}
