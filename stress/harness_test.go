package stress

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

var (
	duration = flag.Duration("stress.duration", 12*time.Second, "how long each scenario runs")
	seedFlag = flag.Uint64("stress.seed", 0, "seed (0: pick one and print it)")
)

// row is one scenario's line in the summary table.
type row struct {
	Scenario                       string
	Transactions, Reruns, Rollback uint64
	Entries, Deliveries, Faults    uint64
	Violations, Leaked             int
	Note                           string
}

var summary struct {
	sync.Mutex
	rows []row
}

func TestMain(m *testing.M) {
	if child := os.Getenv(childEnv); child != "" {
		runChild(child)
		return
	}
	code := m.Run()
	printSummary()
	os.Exit(code)
}

func printSummary() {
	summary.Lock()
	defer summary.Unlock()
	if len(summary.rows) == 0 {
		return
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\ttransactions\treruns\trollbacks\tentries\tdeliveries\tfaults\tviolations\tleaked\t notes")
	for _, r := range summary.rows {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t %s\n", r.Scenario, r.Transactions, r.Reruns,
			r.Rollback, r.Entries, r.Deliveries, r.Faults, r.Violations, r.Leaked, r.Note)
	}
	w.Flush()
}

// scenario runs one stress scenario: it picks the seed, records the
// summary row, checks for leaked goroutines and fails the test on any
// violation, saving the history.
type scenario struct {
	t       *testing.T
	name    string
	seed    uint64
	row     row
	history strings.Builder
	mu      sync.Mutex
	start   int
}

func newScenario(t *testing.T, name string) *scenario {
	s := &scenario{t: t, name: name, seed: *seedFlag}
	if s.seed == 0 {
		s.seed = uint64(time.Now().UnixNano())
	}
	t.Logf("%s: seed %d (replay with -stress.seed %d), duration %v", name, s.seed, s.seed, *duration)
	s.row.Scenario = name
	s.start = runtime.NumGoroutine()
	return s
}

// violation records a broken invariant.
func (s *scenario) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.row.Violations++
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(&s.history, "VIOLATION: %s\n", msg)
	if s.row.Violations <= 10 {
		s.t.Errorf("%s: %s", s.name, msg)
	}
}

// logf adds a line to the history kept for a failure report.
func (s *scenario) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.history.Len() < 4<<20 {
		fmt.Fprintf(&s.history, format+"\n", args...)
	}
}

// finish checks for leaked goroutines (after cleanup), records the row and
// saves the history if anything went wrong. Call it once all of the
// scenario's resources are closed.
func (s *scenario) finish() {
	s.row.Leaked = leaked(s.start)
	if s.row.Leaked > 0 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		s.logf("leaked %d goroutines:\n%s", s.row.Leaked, buf[:n])
		s.t.Errorf("%s: %d goroutines leaked", s.name, s.row.Leaked)
	}
	summary.Lock()
	summary.rows = append(summary.rows, s.row)
	summary.Unlock()
	if s.row.Violations > 0 || s.row.Leaked > 0 {
		dir := filepath.Join("failures")
		_ = os.MkdirAll(dir, 0o755)
		path := filepath.Join(dir, fmt.Sprintf("%s-%d.log", s.name, s.seed))
		_ = os.WriteFile(path, []byte(fmt.Sprintf("seed %d\n%s", s.seed, s.history.String())), 0o644)
		s.t.Logf("history saved to stress/%s", path)
	}
}

// leaked waits up to 10s for the goroutine count to fall back to start and
// returns how many more there are. Goroutines of closed components (Badger,
// idle HTTP connections) take a moment to exit; the wait polls the count,
// it does not synchronise anything.
func leaked(start int) int {
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		n := runtime.NumGoroutine() - start
		if n <= 0 || time.Now().After(deadline) {
			return max(n, 0)
		}
		<-tick.C
	}
}

// until reports whether the scenario's time is not over.
func until(end time.Time) bool { return time.Now().Before(end) }
