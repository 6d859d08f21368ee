// Package crashtest runs a test binary as a child process that a crash test
// kills with SIGKILL.
//
// The child is the same test binary, started with an environment variable
// that the test package's TestMain recognizes; it prints one line per event
// ("ack ..."), or "error ..." when it cannot go on.
package crashtest

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Options say how RunWith starts and kills the child.
type Options struct {
	// Env is added to the child's environment.
	Env []string
	// KillAfter, if positive, kills the child that long after it was
	// started, unless onLine killed it first: a kill at a moment no line
	// marks (while the child opens its files, say).
	KillAfter time.Duration
	// Stuck, if positive, bounds the child's life: a child still running
	// after it gets SIGQUIT (a Go child prints its goroutines to stderr),
	// then SIGKILL, and the test fails.
	Stuck time.Duration
}

// Result says how a child ended.
type Result struct {
	// Killed is true if the child died of the SIGKILL that RunWith sent,
	// false if it exited on its own (or was killed by something else).
	Killed bool
	// Lines is the number of lines the child printed.
	Lines int
	// Elapsed is the child's lifetime, from start to exit.
	Elapsed time.Duration
}

// Run starts os.Args[0] with env added to the environment and calls onLine
// with each line the child prints. When onLine returns true the child is
// killed with SIGKILL; Run keeps reading what it printed before it died, and
// returns once it has exited. A line starting with "error" fails the test.
func Run(t testing.TB, env []string, onLine func(line string) (kill bool)) {
	t.Helper()
	killed := false
	RunWith(t, Options{Env: env}, func(line string) bool {
		if !killed {
			killed = onLine(line)
		}
		return killed
	})
}

// RunWith is Run with Options, and reports how the child ended. onLine is
// called on the test's goroutine with every line the child printed, also
// those read after the kill (the child printed them before it died).
func RunWith(t testing.TB, o Options, onLine func(line string) (kill bool)) Result {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var killOnce sync.Once
	killed := false
	kill := func() {
		killOnce.Do(func() {
			if err := cmd.Process.Signal(syscall.SIGKILL); err == nil {
				killed = true
			}
		})
	}
	if o.KillAfter > 0 {
		timer := time.AfterFunc(o.KillAfter, kill)
		defer timer.Stop()
	}
	var stuck atomic.Bool
	if o.Stuck > 0 {
		timer := time.AfterFunc(o.Stuck, func() {
			stuck.Store(true)
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			time.AfterFunc(2*time.Second, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		})
		defer timer.Stop()
	}
	var r Result
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		r.Lines++
		if strings.HasPrefix(line, "error") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child process: %s", line)
		}
		if onLine(line) {
			kill()
		}
	}
	if err := sc.Err(); err != nil {
		// Stop the child, which would block on a full pipe otherwise.
		kill()
		_ = cmd.Wait()
		t.Fatalf("reading the child's output: %v", err)
	}
	werr := cmd.Wait()
	r.Elapsed = time.Since(start)
	if stuck.Load() {
		t.Fatalf("child process still running after %v (%d lines); its goroutines are above, on stderr", o.Stuck, r.Lines)
	}
	killOnce.Do(func() {}) // no kill from now on; reading killed is safe
	var exit *exec.ExitError
	if errors.As(werr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.Killed = killed
		}
	}
	return r
}
