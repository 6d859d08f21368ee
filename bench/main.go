// Command bench measures Zest against other ways to run the same
// transactions in one process, and against the targets of issue 15:
//
//   - transfer: a 2-record transfer over 1,024 records, against
//     anacrolix/stm v0.5.0 (the established Go STM) and tl2-min, a minimal
//     TL2 behind the same Run(ctx, func(tx) error) shape (tl2.go: the floor
//     for this API);
//   - reads: a read-only transaction of 2 Gets out of 1,024 records, against
//     the same two reads from a map under a sync.RWMutex;
//   - million: transfers over 1,000,000 records with three key shapes: dense
//     keys 0..N-1 (anchor: a mutex per record in a slice indexed by key),
//     random sparse int64 keys like player ids, and string keys (anchor: a
//     mutex per record found through a Go map);
//   - bank: transfers over {8, 1024, 1,000,000} accounts from {1, 8, 64}
//     goroutines for every engine (zest, tl2-min, anacrolix/stm, one mutex
//     over a map, a mutex per record, Badger in-memory transactions);
//   - inserts: blind inserts of distinct keys, one per transaction, against
//     a map under a mutex.
//
// Every engine of a table runs in the same process in interleaved rounds
// (see harness.go); a row is the median over the rounds, and a ratio column
// the median of per-round ratios against the named anchor. Ratios are
// meaningful on a noisy machine even when absolute numbers are not. Every
// table states GOMAXPROCS (anacrolix/stm's cost swings with it); -procs runs
// the selected workloads at several values.
//
// ns/tx is wall time per committed transaction divided by the goroutines'
// count of transactions (the inverse of throughput), allocs/tx heap
// allocations per transaction, reruns/commit discarded attempts per
// committed transaction, and failed the transactions that returned an error
// (always 0 unless something is broken; the run then exits non-zero).
//
// Examples:
//
//	go run .                                              # everything, about 3 minutes on 2 cores
//	go run . -workload transfer -engines zest,tl2-min -count 5
//	go run . -workload transfer -procs 1,2                # the same table at GOMAXPROCS=1 and 2
//	go run . -workload million -shapes sparse -goroutines 8 -cpuprofile cpu.out
//	go tool pprof -tagfocus engine=zest -top cpu.out      # zest's windows only
//	go run . -workload targets -count 9                   # the tables with issue 15's targets
//
// # Caveats
//
//   - bench/ replaces the zest module with the parent directory, so it
//     measures the checkout as it is, uncommitted changes included; the
//     first line of the output names the commit and says so.
//   - ns/tx is wall time. On a loaded machine other processes take part of
//     each window; the CPU ns/tx columns (the process's CPU time, GC
//     included) do not count that, so for 1 goroutine their ratios are the
//     steadier ones. Targets are judged on wall time.
//   - tl2-min is a yardstick, not an engine: int64 cells only, no snapshot
//     extension, no serial mode, no hooks; a Tx kept past its body panics
//     only until the pool hands it to another Run.
//   - The million workload passes string keys that share a per-goroutine
//     buffer (no allocation per key, like a key just parsed from a request).
//     That is sound only because a transfer never inserts; the check after
//     the rounds fails if a table gained a key.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

const initialBalance = 1_000_000

// config is what the flags select.
type config struct {
	w        io.Writer
	d        time.Duration
	count    int
	engines  []string // nil: each workload's own list
	gors     []int    // nil: each workload's own list
	accounts []int
	records  int
	shapes   []string
}

// pick returns the engines of a workload's default list that the -engines
// flag selects, in the default list's order.
func (c *config) pick(defaults []string) []string {
	if c.engines == nil {
		return defaults
	}
	var r []string
	for _, n := range defaults {
		if slices.Contains(c.engines, n) {
			r = append(r, n)
		}
	}
	return r
}

func (c *config) goroutines(defaults []int) []int {
	if c.gors == nil {
		return defaults
	}
	return c.gors
}

// workload is one kind of table; run measures and prints it.
type workload struct {
	name string
	run  func(c *config) error
}

var workloads = []workload{
	{"transfer", transferWorkload},
	{"reads", readsWorkload},
	{"million", millionWorkload},
	{"bank", bankWorkload},
	{"inserts", insertsWorkload},
}

// allEngines is every engine name some workload knows.
var allEngines = []string{"zest", "tl2-min", "anacrolix-stm", "mutex-map", "mutex-per-record", "badger-inmem", "rwmutex-map"}

func main() {
	var (
		dur       = flag.Duration("d", 200*time.Millisecond, "duration of one measurement window")
		count     = flag.Int("count", 5, "interleaved rounds per table cell; medians are reported")
		workloadF = flag.String("workload", "transfer,reads,million,bank,inserts", "workloads to run: transfer, reads, million, bank, inserts (targets = transfer,reads,million: the tables with issue 15's targets)")
		enginesF  = flag.String("engines", "", "engines to run (default: each workload's own list); one of "+strings.Join(allEngines, ","))
		gorsF     = flag.String("goroutines", "", "goroutine counts (default: transfer 1; reads and million 1,8; bank and inserts 1,8,64)")
		procsF    = flag.String("procs", "", "GOMAXPROCS values to run every selected workload at (default: the current value)")
		accountsF = flag.String("accounts", "8,1024,1000000", "bank: account counts")
		records   = flag.Int("records", 1_000_000, "million: record count")
		shapesF   = flag.String("shapes", "dense,sparse,string", "million: key shapes")
		out       = flag.String("o", "", "also write the markdown tables to this file")
		cpuprof   = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (measurement goroutines carry the pprof labels engine and table: go tool pprof -tagfocus engine=zest FILE)")
	)
	flag.Parse()
	if err := run(*dur, *count, *workloadF, *enginesF, *gorsF, *procsF, *accountsF, *records, *shapesF, *out, *cpuprof); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(d time.Duration, count int, workloadF, enginesF, gorsF, procsF, accountsF string, records int, shapesF, out, cpuprof string) error {
	if count < 1 || d <= 0 || records < 2 {
		return fmt.Errorf("-count, -d and -records must be positive (-records at least 2)")
	}
	c := &config{d: d, count: count, records: records, shapes: strings.Split(shapesF, ",")}
	var err error
	if c.accounts, err = ints(accountsF); err != nil {
		return err
	}
	if gorsF != "" {
		if c.gors, err = ints(gorsF); err != nil {
			return err
		}
	}
	procs := []int{runtime.GOMAXPROCS(0)}
	if procsF != "" {
		if procs, err = ints(procsF); err != nil {
			return err
		}
	}
	if enginesF != "" {
		c.engines = strings.Split(enginesF, ",")
		for _, e := range c.engines {
			if !slices.Contains(allEngines, e) {
				return fmt.Errorf("unknown engine %q (known: %s)", e, strings.Join(allEngines, ","))
			}
		}
	}
	for _, s := range c.shapes {
		if !slices.Contains([]string{"dense", "sparse", "string"}, s) {
			return fmt.Errorf("unknown key shape %q (known: dense,sparse,string)", s)
		}
	}
	var selected []workload
	workloadF = strings.ReplaceAll(workloadF, "targets", "transfer,reads,million")
	for _, name := range strings.Split(workloadF, ",") {
		i := slices.IndexFunc(workloads, func(w workload) bool { return w.name == name })
		if i < 0 {
			return fmt.Errorf("unknown workload %q (known: transfer,reads,million,bank,inserts)", name)
		}
		selected = append(selected, workloads[i])
	}

	c.w = os.Stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		c.w = io.MultiWriter(os.Stdout, f)
	}
	if cpuprof != "" {
		f, err := os.Create(cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(c.w, "bench of zest at %s, %s, %s %s/%s, %d CPUs, load average %s; command: `cd bench && go run . %s`\n",
		checkout(), time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
		loadAverage(), strings.Join(os.Args[1:], " "))
	start := time.Now()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, p := range procs {
		runtime.GOMAXPROCS(p)
		for i, wl := range selected {
			t0, gc0 := time.Now(), gcWait.Load()
			if err := wl.run(c); err != nil {
				return err
			}
			runtime.GC()
			fmt.Fprintf(os.Stderr, "bench: %s at GOMAXPROCS=%d took %s (%s of it in forced GCs)\n", selected[i].name, p,
				time.Since(t0).Round(time.Second), time.Duration(gcWait.Load()-gc0).Round(time.Second))
		}
	}
	fmt.Fprintf(os.Stderr, "bench: done in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// checkout names the zest commit being measured (bench/ replaces the module
// with the parent directory), marking uncommitted changes.
func checkout() string {
	rev, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "an unknown commit"
	}
	s := strings.TrimSpace(string(rev))
	if st, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--untracked-files=no", "--", "stm", "table", "internal").Output(); err == nil && len(st) > 0 {
		s += " + uncommitted changes in stm/, table/ or internal/"
	}
	return s
}

// loadAverage is the 1-minute load average (Linux), "unknown" elsewhere:
// on a shared machine it says how much of each window other processes took.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func ints(s string) ([]int, error) {
	var r []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		r = append(r, n)
	}
	return r, nil
}

// header writes a table's title line; every table states GOMAXPROCS.
func header(c *config, title string) {
	fmt.Fprintf(c.w, "\n**%s** (GOMAXPROCS=%d; medians of %d interleaved rounds of %s)\n\n", title, runtime.GOMAXPROCS(0), c.count, c.d)
}

// failedErr reports transactions that returned an error: a broken engine or
// an inconsistent read.
func failedErr(label string, ss []summary) error {
	for _, s := range ss {
		if s.failed > 0 {
			return fmt.Errorf("%s: %s: %d transactions failed", label, s.name, s.failed)
		}
	}
	return nil
}
