// Package crashtest runs a test binary as a child process that a crash test
// kills with SIGKILL.
//
// The child is the same test binary, started with an environment variable
// that the test package's TestMain recognizes; it prints one line per event
// ("ack ..."), or "error ..." when it cannot go on.
package crashtest

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// Run starts os.Args[0] with env added to the environment and calls onLine
// with each line the child prints. When onLine returns true the child is
// killed with SIGKILL; Run keeps reading what it printed before it died, and
// returns once it has exited. A line starting with "error" fails the test.
func Run(t testing.TB, env []string, onLine func(line string) (kill bool)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "error") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child process: %s", line)
		}
		if !killed && onLine(line) {
			killed = true
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait()
}
