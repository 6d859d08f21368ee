package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// How a workload is measured. Every engine of a workload is set up first;
// then each round runs every engine once, for the same window, with the same
// random key sequence, in an order that rotates from round to round, so that
// drift on the shared machine (other processes, thermal, GC of earlier
// rounds) hits every engine alike. A window starts after a forced GC when
// the previous one left garbage (see garbageSlack). A
// row reports the median of each metric over the rounds, and each ratio is
// the median of the per-round ratios (engine's ns/op ÷ anchor's ns/op in the
// same round), for wall time and for the process's CPU time. Targets are
// judged on wall time; on a loaded machine the CPU-time ratio of a
// 1-goroutine row is the steadier one (time other processes take from the
// window inflates wall time, not CPU time).

// contender is one engine in one workload.
type contender struct {
	name string
	// op runs one transaction on the worker's goroutine.
	op func(w *worker) error
	// reruns returns the engine's count of discarded attempts (nil: none).
	reruns func() uint64
	// prepare runs before each window, untimed (nil: nothing).
	prepare func() error
	// check runs after the last round: the engine's invariant (nil: none).
	check func() error
}

// worker is one measuring goroutine's state, passed to every op.
type worker struct {
	id  int
	rng rand.PCG
	n   int // ops done by this worker in this window
	// key buffers for string keys built in place (see strKey).
	keys [2][strKeyLen]byte
}

// intn returns a uniform number in [0, n) without division.
func (w *worker) intn(n int) int {
	hi, _ := bits.Mul64(w.rng.Uint64(), uint64(n))
	return int(hi)
}

// pair returns two distinct numbers in [0, n).
func (w *worker) pair(n int) (int, int) {
	a := w.intn(n)
	b := w.intn(n - 1)
	if b >= a {
		b++
	}
	return a, b
}

// sample is one window of one engine. nsPerOp is wall time; cpuPerOp is the
// process's CPU time (all threads, GC included) per op, which time stolen by
// other processes on a loaded machine does not inflate (NaN where it cannot
// be read).
type sample struct {
	nsPerOp, cpuPerOp, allocs, reruns float64
	failed                            uint64
}

// window runs c.op from g goroutines for d and measures it. Goroutine i of
// every engine in a round draws the same random sequence (seed).
//
// Each worker runs under the pprof labels engine=<name> and
// table=<label>, so that a -cpuprofile of a whole run can be narrowed to
// one engine's windows: go tool pprof -tagfocus engine=zest cpu.out.
func window(label string, c *contender, g int, d time.Duration, seed uint64) (sample, error) {
	if c.prepare != nil {
		if err := c.prepare(); err != nil {
			return sample{}, fmt.Errorf("%s: prepare: %w", c.name, err)
		}
	}
	var (
		stop        atomic.Bool
		ops, failed atomic.Uint64
		wg          sync.WaitGroup
		ms0, ms1    runtime.MemStats
		r0          uint64
	)
	runtime.ReadMemStats(&ms0)
	if ms0.HeapAlloc > liveAfterGC.Load()+garbageSlack {
		// The last window left garbage: collect it now, so that its
		// collection is not charged to this engine's window.
		t0 := time.Now()
		runtime.GC()
		gcWait.Add(int64(time.Since(t0)))
		runtime.ReadMemStats(&ms0)
		liveAfterGC.Store(ms0.HeapAlloc)
	}
	if c.reruns != nil {
		r0 = c.reruns()
	}
	cpu0, cpuOK := processCPU()
	start := time.Now()
	for i := range g {
		wg.Go(func() {
			pprof.Do(context.Background(), pprof.Labels("engine", c.name, "table", label), func(context.Context) {
				w := &worker{id: i, rng: *rand.NewPCG(seed, uint64(i)+1)}
				var nf uint64
				for !stop.Load() {
					if c.op(w) != nil {
						nf++
					}
					w.n++
				}
				ops.Add(uint64(w.n))
				failed.Add(nf)
			})
		})
	}
	time.Sleep(d) // the measurement window, not synchronisation
	stop.Store(true)
	wg.Wait()
	el := time.Since(start)
	cpu1, _ := processCPU()
	runtime.ReadMemStats(&ms1)
	n := float64(max(ops.Load(), 1))
	s := sample{
		nsPerOp:  float64(el.Nanoseconds()) / n,
		cpuPerOp: math.NaN(),
		allocs:   float64(ms1.Mallocs-ms0.Mallocs) / n,
		failed:   failed.Load(),
	}
	if cpuOK {
		s.cpuPerOp = float64((cpu1 - cpu0).Nanoseconds()) / n
	}
	if c.reruns != nil {
		s.reruns = float64(c.reruns()-r0) / n
	}
	return s, nil
}

// A window starts with a forced GC when the heap holds more than
// garbageSlack beyond what the last forced GC left live: an engine that
// allocates pays for its own collections, not the next engine. Windows of
// engines that allocate nothing skip it (a full GC of the million-record
// heaps costs more wall time than the windows themselves).
const garbageSlack = 1 << 20

var (
	liveAfterGC atomic.Uint64
	// gcWait totals the time spent in those forced GCs (stderr reports it).
	gcWait atomic.Int64
)

// summary is one engine's row: medians over the rounds.
type summary struct {
	name                              string
	nsPerOp, cpuPerOp, allocs, reruns float64
	failed                            uint64
	// ratio[a] is the median over rounds of nsPerOp ÷ anchor a's nsPerOp,
	// cpuRatio[a] the same of cpuPerOp.
	ratio, cpuRatio map[string]float64
}

// measureRounds runs count interleaved rounds of cs from g goroutines and
// summarises them; anchors name the engines the ratios are taken against.
// label prefixes the progress lines on stderr.
func measureRounds(label string, cs []*contender, g int, d time.Duration, count int, anchors []string) ([]summary, error) {
	// One unrecorded window each first: the first window of an engine pays
	// for its pools, caches and code warming up.
	for _, c := range cs {
		if _, err := window(label, c, g, min(d, 50*time.Millisecond), 1); err != nil {
			return nil, err
		}
	}
	byRound := make([][]sample, count) // [round][contender]
	for r := range count {
		byRound[r] = make([]sample, len(cs))
		seed := uint64(time.Now().UnixNano())
		for k := range cs {
			i := (k + r) % len(cs) // rotate the order
			s, err := window(label, cs[i], g, d, seed)
			if err != nil {
				return nil, err
			}
			byRound[r][i] = s
		}
		var b strings.Builder
		for i, c := range cs {
			fmt.Fprintf(&b, " %s=%.0fns", c.name, byRound[r][i].nsPerOp)
		}
		fmt.Fprintf(os.Stderr, "%s g=%d round %d/%d:%s\n", label, g, r+1, count, b.String())
	}
	out := make([]summary, len(cs))
	for i, c := range cs {
		col := func(f func(s sample) float64) float64 {
			v := make([]float64, count)
			for r := range count {
				v[r] = f(byRound[r][i])
			}
			return median(v)
		}
		s := summary{
			name:     c.name,
			nsPerOp:  col(func(s sample) float64 { return s.nsPerOp }),
			cpuPerOp: col(func(s sample) float64 { return s.cpuPerOp }),
			allocs:   col(func(s sample) float64 { return s.allocs }),
			reruns:   col(func(s sample) float64 { return s.reruns }),
			ratio:    map[string]float64{},
			cpuRatio: map[string]float64{},
		}
		for r := range count {
			s.failed += byRound[r][i].failed
		}
		for _, a := range anchors {
			j := slices.IndexFunc(cs, func(c *contender) bool { return c.name == a })
			if j < 0 {
				continue
			}
			v, cv := make([]float64, count), make([]float64, count)
			for r := range count {
				v[r] = byRound[r][i].nsPerOp / byRound[r][j].nsPerOp
				cv[r] = byRound[r][i].cpuPerOp / byRound[r][j].cpuPerOp
			}
			s.ratio[a], s.cpuRatio[a] = median(v), median(cv)
		}
		out[i] = s
	}
	for _, c := range cs {
		if c.check != nil {
			if err := c.check(); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", label, c.name, err)
			}
		}
	}
	return out, nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// row is one printed line: leading key columns and an engine's summary.
type row struct {
	keys []string
	s    summary
}

// printTable writes rows as a markdown table with one ratio column per
// anchor.
func printTable(w io.Writer, keyCols []string, unit string, anchors []string, rows []row) {
	h := append(slices.Clone(keyCols), "engine", unit+"/s", "ns/"+unit, "CPU ns/"+unit, "allocs/"+unit, "reruns/commit", "failed")
	for _, a := range anchors {
		h = append(h, "ns ÷ "+a, "CPU ÷ "+a)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(h, " | "))
	align := make([]string, len(h))
	for i := range align {
		align[i] = "---:"
	}
	align[len(keyCols)] = "---"
	fmt.Fprintf(w, "|%s|\n", strings.Join(align, "|"))
	for _, r := range rows {
		s := r.s
		cells := append(slices.Clone(r.keys), s.name,
			fmt.Sprintf("%.0f", 1e9/s.nsPerOp), fmt.Sprintf("%.0f", s.nsPerOp), fmt.Sprintf("%.0f", s.cpuPerOp),
			fmt.Sprintf("%.2f", s.allocs), fmt.Sprintf("%.3f", s.reruns), fmt.Sprint(s.failed))
		for _, a := range anchors {
			v, ok := s.ratio[a]
			cv := s.cpuRatio[a]
			cells = append(cells, fmtRatio(v, ok), fmtRatio(cv, ok))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
}

func fmtRatio(v float64, ok bool) string {
	switch {
	case !ok || math.IsNaN(v):
		return "n/a"
	case v < 0.1:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// target is a goal of issue 15 on one ratio (or on allocations).
type target struct {
	engine, anchor string
	// maxRatio bounds engine ns ÷ anchor ns; 0 means no bound.
	maxRatio float64
	// noAllocs asks for no heap allocation per op in steady state: at most
	// maxSteadyAllocs (a sync.Pool refilled after the forced GC that starts
	// each window costs a few allocations per window, not per op).
	noAllocs bool
	text     string // the goal in the words
}

// printTargets writes one line per target whose engine is among ss,
// prefixed with label.
func printTargets(w io.Writer, label string, ts []target, ss []summary) {
	for _, t := range ts {
		i := slices.IndexFunc(ss, func(s summary) bool { return s.name == t.engine })
		if i < 0 {
			continue
		}
		s := ss[i]
		if t.maxRatio > 0 {
			v, ok := s.ratio[t.anchor]
			if !ok {
				continue
			}
			how := fmt.Sprintf("%s ns ÷ %s ns = %s", t.engine, t.anchor, fmtRatio(v, true))
			if v < 1 {
				how += fmt.Sprintf(" (%.1f× its throughput)", 1/v)
			}
			cv := s.cpuRatio[t.anchor]
			how += fmt.Sprintf(", CPU time ratio %s", fmtRatio(cv, true))
			fmt.Fprintf(w, "- %s%s: target %s: on wall time %s, on CPU time %s\n", label, how, t.text,
				metOrNot(v <= t.maxRatio), metOrNot(!math.IsNaN(cv) && cv <= t.maxRatio))
		}
		if t.noAllocs {
			fmt.Fprintf(w, "- %s%s allocs/op = %.4f: target %s: %s\n", label, t.engine, s.allocs, t.text, metOrNot(s.allocs <= maxSteadyAllocs))
		}
	}
}

// maxSteadyAllocs is the most allocations per op that count as none.
const maxSteadyAllocs = 0.001

func metOrNot(ok bool) string {
	if ok {
		return "**met**"
	}
	return "not met"
}
