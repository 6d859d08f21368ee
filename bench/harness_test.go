package main

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestWorkloads runs every workload briefly with every engine and checks
// that each printed its table with every engine's row and its target lines.
// The workloads themselves check the engines' invariants (conserved totals,
// consistent reads, no key added) and fail on any failed transaction.
func TestWorkloads(t *testing.T) {
	for _, wl := range workloads {
		t.Run(wl.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := &config{w: &buf, d: 5 * time.Millisecond, count: 2, accounts: []int{8, 64},
				records: 3000, shapes: []string{"dense", "sparse", "string"}, gors: []int{1, 3}}
			if err := wl.run(c); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			want := map[string][]string{
				"transfer": {"| 1 | zest |", "| 3 | tl2-min |", "| 1 | anacrolix-stm |", "| 3 | mutex-per-record |", "target ≥ 20×", "target ≤ 3×"},
				"reads":    {"| 1 | zest |", "| 3 | tl2-min |", "| 1 | rwmutex-map |", "target 0 allocs", "target ≤ 2×"},
				"million":  {"| dense | 1 | zest |", "| sparse | 3 | tl2-min |", "| string | 3 | mutex-per-record |", "string keys, goroutines=3: zest ns ÷ mutex-per-record"},
				"bank":     {"| 8 | 1 | badger-inmem |", "| 64 | 3 | mutex-map |", "| 64 | 1 | tl2-min |"},
				"inserts":  {"| 3 | zest |", "| 1 | mutex-map |"},
			}[wl.name]
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if !strings.Contains(out, "GOMAXPROCS=") {
				t.Errorf("table header does not state GOMAXPROCS:\n%s", out)
			}
		})
	}
}

// TestEngineFilter: -engines keeps the selected engines only, and ratios
// against a missing anchor print as n/a.
func TestEngineFilter(t *testing.T) {
	var buf bytes.Buffer
	c := &config{w: &buf, d: 5 * time.Millisecond, count: 1, engines: []string{"zest", "tl2-min"}}
	if err := transferWorkload(c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "| 1 | anacrolix-stm") {
		t.Errorf("anacrolix-stm ran though not selected:\n%s", out)
	}
	if !strings.Contains(out, "| 1 | zest |") || !strings.Contains(out, "| n/a |") {
		t.Errorf("want a zest row with n/a against the missing anchor:\n%s", out)
	}
}

// TestKeys: sparse ids are distinct and non-negative over a million record
// numbers, and a key built in a worker's buffer equals the allocated one.
func TestKeys(t *testing.T) {
	const n = 1_000_000
	seen := make(map[int64]struct{}, n)
	for i := range n {
		id := sparseID(i)
		if id < 0 {
			t.Fatalf("sparseID(%d) = %d < 0", i, id)
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("sparseID(%d) = %d repeats", i, id)
		}
		seen[id] = struct{}{}
	}
	w := &worker{}
	for _, i := range []int{0, 1, 12345, n - 1} {
		a, b := w.strKey(0, sparseID(i)), strKeyOf(sparseID(i))
		if a != b || len(a) != strKeyLen || !strings.HasPrefix(a, "player:") {
			t.Fatalf("key of %d: %q in the buffer, %q allocated", i, a, b)
		}
	}
}

// TestPair: two distinct numbers in range, every pair reachable.
func TestPair(t *testing.T) {
	w := &worker{rng: *rand.NewPCG(1, 2)}
	const n = 5
	seen := map[[2]int]bool{}
	for range 10_000 {
		a, b := w.pair(n)
		if a == b || a < 0 || b < 0 || a >= n || b >= n {
			t.Fatalf("pair(%d) = %d, %d", n, a, b)
		}
		seen[[2]int{a, b}] = true
	}
	if len(seen) != n*(n-1) {
		t.Fatalf("%d distinct pairs, want %d", len(seen), n*(n-1))
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestBrokenEngineFails: an engine whose transactions fail or whose
// invariant breaks makes the measurement fail, so a broken engine cannot
// print a fast row.
func TestBrokenEngineFails(t *testing.T) {
	ok := &contender{name: "ok", op: func(*worker) error { return nil }}
	failing := &contender{name: "failing", op: func(*worker) error { return errInconsistent }}
	ss, err := measureRounds("test", []*contender{ok, failing}, 2, time.Millisecond, 1, []string{"ok"})
	if err != nil {
		t.Fatal(err)
	}
	if err := failedErr("test", ss); err == nil || !strings.Contains(err.Error(), "failing") {
		t.Fatalf("failedErr = %v, want the failing engine named", err)
	}
	if ss[1].ratio["ok"] <= 0 || ss[0].ratio["ok"] != 1 {
		t.Fatalf("ratios %v and %v, want positive and exactly 1 for the anchor", ss[1].ratio, ss[0].ratio)
	}
	broken := &contender{name: "broken", op: func(*worker) error { return nil },
		check: func() error { return errInconsistent }}
	if _, err := measureRounds("test", []*contender{ok, broken}, 1, time.Millisecond, 1, nil); err == nil {
		t.Fatal("a failed check did not fail the measurement")
	}
}
