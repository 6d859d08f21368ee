package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/stm"
)

// TestMain lets the test binary run as zest itself, for the test of the real
// process's exit code.
func TestMain(m *testing.M) {
	if os.Getenv("ZEST_CLI_AS_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// sink fails the keys it is told to fail, permanently, until told to
// succeed.
type sink struct {
	mu        sync.Mutex
	failing   map[string]bool
	delivered []effectqueue.Item
}

func (s *sink) Apply(ctx context.Context, d mover.Delivery) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing[d.Key] {
		return mover.Permanent(errors.New("sink refuses " + d.Key))
	}
	s.delivered = append(s.delivered, d.Item)
	return nil
}

func (s *sink) succeed(k string) {
	s.mu.Lock()
	delete(s.failing, k)
	s.mu.Unlock()
}

const token = "t0ken"

var quiet = slog.New(slog.DiscardHandler)

// server is the real admin handler over a real queue "main" (with a mover)
// and a queue "idle" (no mover: its entries stay pending), behind a bearer
// token.
type server struct {
	t        *testing.T
	db       *stm.DB
	q        *effectqueue.Queue
	idleDB   *stm.DB
	idle     *effectqueue.Queue
	m        *mover.Mover
	sink     *sink
	url      string
	readOnly string
}

func newServer(t *testing.T, failing ...string) *server {
	t.Helper()
	s := &server{t: t, sink: &sink{failing: map[string]bool{}}}
	for _, k := range failing {
		s.sink.failing[k] = true
	}
	var err error
	s.db, _ = stm.Open(nil)
	if s.q, err = effectqueue.Open(s.db, &effectqueue.Options{Dir: t.TempDir(), Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.q.Close() })
	s.idleDB, _ = stm.Open(nil)
	if s.idle, err = effectqueue.Open(s.idleDB, &effectqueue.Options{Dir: t.TempDir(), Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.idle.Close() })
	if s.m, err = mover.New(s.q, map[string]mover.Sink{"t": s.sink}, &mover.Options{PollInterval: 50 * time.Millisecond, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	opts := admin.Options{
		RootPath:  "/admin",
		DB:        s.db,
		Queues:    map[string]*effectqueue.Queue{"main": s.q, "idle": s.idle},
		Movers:    map[string]*mover.Mover{"main": s.m},
		Authorize: func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token },
		Logger:    quiet,
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", admin.Handler(&opts))
	ro := opts
	ro.ReadOnly, ro.RootPath = true, "/ro"
	mux.Handle("/ro/", admin.Handler(&ro))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url, s.readOnly = srv.URL+"/admin", srv.URL+"/ro"
	return s
}

func (s *server) enqueue(db *stm.DB, q *effectqueue.Queue, keys ...string) []uint64 {
	s.t.Helper()
	var seqs []uint64
	for _, k := range keys {
		if err := db.Run(context.Background(), func(tx *stm.Tx) error {
			return q.Enqueue(tx, effectqueue.Entry{Kind: "t.put", Key: k, Payload: []byte("body of " + k)})
		}); err != nil {
			s.t.Fatal(err)
		}
		seqs = append(seqs, q.Head())
	}
	return seqs
}

func (s *server) drain() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.m.WaitDrained(ctx); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) dead(q *effectqueue.Queue) []uint64 {
	s.t.Helper()
	dls, err := q.DeadLetters(context.Background(), 0, 1000)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []uint64
	for _, d := range dls {
		out = append(out, d.Seq)
	}
	return out
}

// zest runs the CLI against the server with the token and returns its exit
// code, stdout and stderr.
func (s *server) zest(args ...string) (int, string, string) {
	return s.zestEnv(map[string]string{"ZEST_ADMIN_URL": s.url, "ZEST_ADMIN_TOKEN": token, "USER": "carol"}, args...)
}

func (s *server) zestEnv(env map[string]string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
	return code, out.String(), errb.String()
}

func TestQueueAndDeadLetters(t *testing.T) {
	s := newServer(t, "bad")
	seqs := s.enqueue(s.db, s.q, "a", "bad", "b", "bad")
	s.drain()

	code, out, errs := s.zest("queue")
	if code != 0 || !strings.Contains(out, "QUEUE") || !regexpLine(out, `^main\s+4\s+0\s+0s\s+2\s+0\s+running\s+2\s+0\s*$`) {
		t.Fatalf("zest queue: %d\n%s%s", code, out, errs)
	}
	code, out, _ = s.zest("--json", "queue")
	var qs []admin.QueueSummary
	if code != 0 || json.Unmarshal([]byte(out), &qs) != nil || len(qs) != 2 {
		t.Fatalf("zest --json queue: %d %s", code, out)
	}

	code, out, errs = s.zest("dead", "ls", "--queue", "main")
	if code != 0 || !regexpLine(out, fmt.Sprintf(`^%d\s+t\.put\s+bad\s+`, seqs[1])) || !regexpLine(out, fmt.Sprintf(`^%d\s+t\.put\s+bad\s+`, seqs[3])) {
		t.Fatalf("zest dead ls: %d\n%s%s", code, out, errs)
	}
	code, out, _ = s.zest("--queue", "main", "dead", "show", fmt.Sprint(seqs[1]))
	if code != 0 || !strings.Contains(out, "body of bad") || !strings.Contains(out, "sink refuses bad") {
		t.Fatalf("zest dead show: %d\n%s", code, out)
	}
	code, out, _ = s.zest("--queue", "main", "dead", "show", fmt.Sprint(seqs[1]), "--hex")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("%x", "body of bad")) {
		t.Fatalf("zest dead show --hex: %d\n%s", code, out)
	}

	// A dry run lists the two and changes nothing.
	before := s.dead(s.q)
	code, out, _ = s.zest("--queue", "main", "dead", "replay", "--all", "--key", "bad", "--dry-run")
	if code != 0 || !strings.Contains(out, "would replay 2 dead letter(s)") {
		t.Fatalf("dry run: %d\n%s", code, out)
	}
	if after := s.dead(s.q); fmt.Sprint(after) != fmt.Sprint(before) || s.q.Head() != seqs[3] {
		t.Fatalf("dry run changed the queue: dead %v -> %v, head %d", before, after, s.q.Head())
	}

	s.sink.succeed("bad")
	code, out, errs = s.zest("dead", "replay", "--all", "--key", "bad", "--queue", "main", "--json")
	var br admin.BatchResult
	if code != 0 || json.Unmarshal([]byte(out), &br) != nil || len(br.Done) != 2 || br.Done[0].Seq != seqs[1] || br.Done[1].Seq != seqs[3] {
		t.Fatalf("replay --all --key: %d\n%s%s", code, out, errs)
	}
	s.drain()
	if d := s.dead(s.q); len(d) != 0 {
		t.Fatalf("dead letters after the replay: %v", d)
	}
	code, out, _ = s.zest("actions")
	if code != 0 || !regexpLine(out, `carol\s+/admin/api/queues/main/dead/replay\s+-\s+200`) {
		t.Fatalf("zest actions: %d\n%s", code, out)
	}
	code, out, _ = s.zest("stats")
	// 4 enqueues and 2 replays (a replay is a transaction of the DB).
	if code != 0 || !regexpLine(out, `^commits\s+6\s*$`) {
		t.Fatalf("zest stats: %d\n%s", code, out)
	}
}

func TestSingleActionsAndPending(t *testing.T) {
	s := newServer(t, "bad")
	seqs := s.enqueue(s.db, s.q, "bad", "bad")
	s.drain()
	idle := s.enqueue(s.idleDB, s.idle, "p")

	code, out, _ := s.zest("--queue", "idle", "pending", "ls")
	if code != 0 || !regexpLine(out, fmt.Sprintf(`^%d\s+t\.put\s+p\s+`, idle[0])) {
		t.Fatalf("pending ls: %d\n%s", code, out)
	}
	code, out, _ = s.zest("--queue", "main", "dead", "discard", fmt.Sprint(seqs[0]), "--dry-run")
	if code != 0 || !strings.Contains(out, "would discard dead letter") || len(s.dead(s.q)) != 2 {
		t.Fatalf("discard --dry-run: %d\n%s", code, out)
	}
	code, out, _ = s.zest("--queue", "main", "dead", "discard", fmt.Sprint(seqs[0]))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("discarded %d", seqs[0])) || fmt.Sprint(s.dead(s.q)) != fmt.Sprint(seqs[1:]) {
		t.Fatalf("discard: %d\n%s", code, out)
	}
	s.sink.succeed("bad")
	code, out, _ = s.zest("--queue", "main", "dead", "replay", fmt.Sprint(seqs[1]))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d as", seqs[1])) {
		t.Fatalf("replay: %d\n%s", code, out)
	}
	s.drain()
	if len(s.dead(s.q)) != 0 {
		t.Fatal("dead letter left after replay")
	}
	code, out, _ = s.zest("--queue", "main", "mover", "pause")
	if code != 0 || out != "mover of main: paused\n" || !s.m.Paused() {
		t.Fatalf("mover pause: %d %q (paused %v)", code, out, s.m.Paused())
	}
	code, out, _ = s.zest("queue", "--queue", "main")
	if code != 0 || !regexpLine(out, `^main\s.*\spaused\s`) {
		t.Fatalf("queue while paused: %d\n%s", code, out)
	}
	code, out, _ = s.zest("--queue", "main", "mover", "resume", "--json")
	if code != 0 || !strings.Contains(out, `"paused": false`) || s.m.Paused() {
		t.Fatalf("mover resume: %d %q", code, out)
	}
}

// TestExitCodes: each kind of failure has its exit code and a message on
// stderr, and changes nothing.
func TestExitCodes(t *testing.T) {
	s := newServer(t, "bad")
	seqs := s.enqueue(s.db, s.q, "bad")
	s.drain()
	idle := s.enqueue(s.idleDB, s.idle, "p")
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>hello</html>")) }))
	defer other.Close()
	full := map[string]string{"ZEST_ADMIN_URL": s.url, "ZEST_ADMIN_TOKEN": token}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"no command", full, nil, exitUsage, "usage"},
		{"unknown command", full, []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"unknown flag", full, []string{"dead", "ls", "--frob"}, exitUsage, "frob"},
		{"bad url", map[string]string{"ZEST_ADMIN_URL": "ftp://x"}, []string{"queue"}, exitUsage, "not an http(s) URL"},
		{"several queues", full, []string{"dead", "ls"}, exitUsage, "several queues (idle, main)"},
		{"bad seq", full, []string{"--queue", "main", "dead", "show", "x"}, exitUsage, `"x" is not a sequence number`},
		{"seq and all", full, []string{"--queue", "main", "dead", "replay", "1", "--all"}, exitUsage, "a sequence number or --all"},
		{"key without all", full, []string{"--queue", "main", "dead", "discard", "--key", "bad"}, exitUsage, "--key needs --all"},
		{"limit out of range", full, []string{"--queue", "main", "dead", "ls", "--limit", "0"}, exitUsage, `limit "0"`},
		{"no token", map[string]string{"ZEST_ADMIN_URL": s.url}, []string{"queue"}, exitRefused, "HTTP 401"},
		{"wrong token", map[string]string{"ZEST_ADMIN_URL": s.url, "ZEST_ADMIN_TOKEN": "nope"}, []string{"queue"}, exitRefused, "HTTP 403"},
		{"read-only", map[string]string{"ZEST_ADMIN_URL": s.readOnly, "ZEST_ADMIN_TOKEN": token}, []string{"--queue", "main", "dead", "discard", fmt.Sprint(seqs[0])}, exitRefused, "read-only"},
		{"unknown queue", full, []string{"--queue", "nope", "dead", "ls"}, exitNotFound, `no queue named "nope"`},
		{"unknown dead letter", full, []string{"--queue", "main", "dead", "replay", "999"}, exitNotFound, "no dead letter 999"},
		{"dry run of unknown", full, []string{"--queue", "main", "dead", "replay", "999", "--dry-run"}, exitNotFound, "no dead letter 999"},
		{"pending is no dead letter", full, []string{"--queue", "idle", "dead", "replay", fmt.Sprint(idle[0])}, exitConflict, "is pending, not a dead letter"},
		{"no mover", full, []string{"--queue", "idle", "mover", "pause"}, exitNotFound, "has no mover"},
		{"no saga section", full, []string{"sagas", "stuck"}, exitNotFound, "no API endpoint"},
		{"no token section", full, []string{"tokens", "get", "k", "--scope", "u"}, exitNotFound, "no API endpoint"},
		{"resolve without note", full, []string{"sagas", "resolve", "s1", "--action", "retry"}, exitUsage, "--note is required"},
		{"resolve bad action", full, []string{"sagas", "resolve", "s1", "--action", "undo", "--note", "x"}, exitUsage, "--action must be"},
		{"server down", map[string]string{"ZEST_ADMIN_URL": closed.URL}, []string{"queue"}, exitFailed, "connection refused"},
		{"not an admin handler", map[string]string{"ZEST_ADMIN_URL": other.URL}, []string{"queue"}, exitFailed, "is --url the admin handler?"},
	}
	before := fmt.Sprint(s.dead(s.q), s.dead(s.idle), s.q.Head(), s.idle.Head())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := s.zestEnv(c.env, c.args...)
			if code != c.code || !strings.Contains(errs, c.msg) {
				t.Fatalf("zest %q: exit %d, stderr %q; want exit %d and %q (stdout %q)", c.args, code, errs, c.code, c.msg, out)
			}
			if after := fmt.Sprint(s.dead(s.q), s.dead(s.idle), s.q.Head(), s.idle.Head()); after != before {
				t.Fatalf("zest %q changed the queues: %s -> %s", c.args, before, after)
			}
		})
	}
}

// TestNoTerminalEscapes: a key holding terminal escape sequences is printed
// escaped, in tables and in show.
func TestNoTerminalEscapes(t *testing.T) {
	evil := "k\x1b[2J\x1b]0;pwned\x07\ttab\nline"
	s := newServer(t, evil)
	seqs := s.enqueue(s.db, s.q, evil)
	s.drain()
	for _, args := range [][]string{{"--queue", "main", "dead", "ls"}, {"--queue", "main", "dead", "show", fmt.Sprint(seqs[0])}} {
		code, out, _ := s.zest(args...)
		if code != 0 || strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `k\x1b[2J`) {
			t.Fatalf("zest %q: %d %q", args, code, out)
		}
	}
}

// TestProcessExitCode runs the real process and checks its exit status.
func TestProcessExitCode(t *testing.T) {
	s := newServer(t)
	for _, c := range []struct {
		args []string
		code int
	}{{[]string{"--queue", "main", "queue"}, 0}, {[]string{"--queue", "nope", "queue"}, exitNotFound}, {[]string{"bogus"}, exitUsage}} {
		cmd := exec.Command(os.Args[0], c.args...)
		cmd.Env = append(os.Environ(), "ZEST_CLI_AS_MAIN=1", "ZEST_ADMIN_URL="+s.url, "ZEST_ADMIN_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code {
			t.Fatalf("zest %q exited %d, want %d:\n%s", c.args, code, c.code, out)
		}
	}
}

func regexpLine(out, re string) bool {
	return regexpMust(re).MatchString(out)
}

// TestInspect reads a stopped server's queue directory: the same answers as
// online, read-only, and a clear refusal while another process holds it.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t}
	seqs := s.enqueue(db, q, "a", "b", "c")
	if err := q.DeadLetter(context.Background(), seqs[1], "set aside"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	// While the queue is open, inspect is refused.
	code, _, errs := s.zestEnv(env, "inspect", "--dir", dir, "queue")
	if code != exitFailed || !strings.Contains(errs, "is the server still running?") {
		t.Fatalf("inspect of an open directory: %d %s", code, errs)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errs := s.zestEnv(env, "inspect", "--dir", dir, "queue")
	if code != 0 || !regexpLine(out, `^main\s+3\s+2\s+\S+\s+1\s+0\s+-`) {
		t.Fatalf("inspect queue: %d\n%s%s", code, out, errs)
	}
	code, out, _ = s.zestEnv(env, "inspect", "--dir", dir, "dead", "show", fmt.Sprint(seqs[1]))
	if code != 0 || !strings.Contains(out, "body of b") || !strings.Contains(out, "set aside") {
		t.Fatalf("inspect dead show: %d\n%s", code, out)
	}
	code, out, _ = s.zestEnv(env, "inspect", "--dir", dir, "pending", "ls", "--json")
	var p admin.Page[admin.EntrySummary]
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || len(p.Items) != 2 {
		t.Fatalf("inspect pending ls: %d\n%s", code, out)
	}
	code, _, errs = s.zestEnv(env, "inspect", "--dir", dir, "dead", "replay", fmt.Sprint(seqs[1]))
	if code != exitRefused || !strings.Contains(errs, "read-only") {
		t.Fatalf("inspect dead replay: %d %s", code, errs)
	}
	if code, _, _ = s.zestEnv(env, "inspect", "--dir", dir, "mover", "pause"); code != exitUsage {
		t.Fatalf("inspect mover pause: %d", code)
	}
	// Nothing was changed: the queue reopens with the same state.
	db2, _ := stm.Open(nil)
	q2, err := effectqueue.Open(db2, &effectqueue.Options{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if q2.Head() != seqs[2] || q2.Depth() != 2 {
		t.Fatalf("after inspect: head %d depth %d", q2.Head(), q2.Depth())
	}
}
