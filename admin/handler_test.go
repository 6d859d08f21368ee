package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zest-stm/zest/admin"
)

// TestDeadLetterLifecycle: a sink failure dead-letters an entry; the API
// shows it in the summary, the list and the inspect endpoint; replay puts it
// back at the tail with its operation id, and it is delivered.
func TestDeadLetterLifecycle(t *testing.T) {
	e := newEnv(t, nil, "bad")
	seqs := e.enqueue(e.db, e.q, "a", "bad", "b")
	e.drain()

	var sum admin.QueueSummary
	if st, body := e.do("GET", "/api/queues/main", "", nil, &sum); st != 200 {
		t.Fatalf("summary: %d %s", st, body)
	}
	if sum.Head != seqs[2] || sum.Depth != 0 || sum.DeadLetters != 1 || sum.Mover == nil || sum.Mover.Delivered != 2 || sum.Mover.DeadLettered != 1 {
		t.Fatalf("summary = %+v (mover %+v)", sum, sum.Mover)
	}

	var dead admin.Page[admin.EntrySummary]
	e.do("GET", "/api/queues/main/dead", "", nil, &dead)
	if len(dead.Items) != 1 || dead.Items[0].Seq != seqs[1] || dead.Items[0].Key != "bad" || !strings.Contains(dead.Items[0].Reason, "sink refuses bad") {
		t.Fatalf("dead letters = %+v", dead.Items)
	}

	var d admin.EntryDetail
	if st, body := e.do("GET", fmt.Sprintf("/api/queues/main/dead/%d", seqs[1]), "", nil, &d); st != 200 {
		t.Fatalf("inspect: %d %s", st, body)
	}
	if d.State != "dead" || d.Payload.Encoding != "text" || d.Payload.Data != "payload of bad" || d.Meta["k"] != "bad" {
		t.Fatalf("detail = %+v", d)
	}
	// The entries endpoint finds a dead letter too, and says so.
	var d2 admin.EntryDetail
	e.do("GET", fmt.Sprintf("/api/queues/main/entries/%d", seqs[1]), "", nil, &d2)
	if d2.State != "dead" {
		t.Fatalf("entries/%d state = %q, want dead", seqs[1], d2.State)
	}

	e.sink.succeed("bad")
	var rr admin.ReplayResult
	if st, body := e.do("POST", fmt.Sprintf("/api/queues/main/dead/%d/replay", seqs[1]), "", map[string]string{"X-Zest-Actor": "alice"}, &rr); st != 200 {
		t.Fatalf("replay: %d %s", st, body)
	}
	if rr.Seq != seqs[1] || rr.NewSeq <= seqs[2] {
		t.Fatalf("replay = %+v, want a new sequence number after %d", rr, seqs[2])
	}
	got := e.sink.waitDelivered(t, 3)
	last := got[2]
	if last.Seq != rr.NewSeq || last.Key != "bad" || last.OpID != d.OpID {
		t.Fatalf("delivered %+v, want seq %d key bad op %s", last, rr.NewSeq, d.OpID)
	}
	e.drain()
	e.do("GET", "/api/queues/main", "", nil, &sum)
	if sum.DeadLetters != 0 || sum.Depth != 0 {
		t.Fatalf("after replay: %+v", sum)
	}
	// The action is recorded with who did it.
	var acts []admin.ActionRecord
	e.do("GET", "/api/actions", "", nil, &acts)
	if len(acts) != 1 || acts[0].Actor != "alice" || acts[0].Status != 200 || !strings.Contains(acts[0].Path, "/replay") {
		t.Fatalf("actions = %+v", acts)
	}
	if !strings.Contains(e.logs.String(), "actor=alice") {
		t.Fatalf("the action was not logged with its actor:\n%s", e.logs)
	}
}

// TestReplayAllByKey: every dead letter of one key is replayed, in sequence
// order, and delivered in that order; other keys' dead letters stay. A dry
// run lists the same entries and changes nothing.
func TestReplayAllByKey(t *testing.T) {
	e := newEnv(t, nil, "k", "other")
	seqs := e.enqueue(e.db, e.q, "k", "other", "k", "ok", "k")
	e.drain()
	want := []uint64{seqs[0], seqs[2], seqs[4]}

	before := e.state()
	var dry admin.BatchResult
	if st, body := e.do("POST", "/api/queues/main/dead/replay", `{"key":"k","dryRun":true}`, nil, &dry); st != 200 {
		t.Fatalf("dry run: %d %s", st, body)
	}
	var drySeqs []uint64
	for _, r := range dry.Done {
		drySeqs = append(drySeqs, r.Seq)
		if r.NewSeq != 0 {
			t.Fatalf("dry run gave a new sequence number: %+v", r)
		}
	}
	if !dry.DryRun || !reflect.DeepEqual(drySeqs, want) {
		t.Fatalf("dry run = %+v, want seqs %v", dry, want)
	}
	if after := e.state(); !reflect.DeepEqual(before, after) {
		t.Fatalf("dry run changed the state: %+v -> %+v", before, after)
	}

	e.sink.succeed("k")
	var res admin.BatchResult
	if st, body := e.do("POST", "/api/queues/main/dead/replay", `{"key":"k"}`, nil, &res); st != 200 {
		t.Fatalf("replay all: %d %s", st, body)
	}
	if res.Error != "" || len(res.Done) != 3 {
		t.Fatalf("replay all = %+v", res)
	}
	for i, r := range res.Done {
		if r.Seq != want[i] || (i > 0 && r.NewSeq <= res.Done[i-1].NewSeq) {
			t.Fatalf("replay all = %+v: want old seqs %v with increasing new seqs", res.Done, want)
		}
	}
	got := e.sink.waitDelivered(t, 4) // "ok" and the three of "k"
	var ks []uint64
	for _, it := range got {
		if it.Key == "k" {
			ks = append(ks, it.Seq)
		}
	}
	if !reflect.DeepEqual(ks, []uint64{res.Done[0].NewSeq, res.Done[1].NewSeq, res.Done[2].NewSeq}) {
		t.Fatalf("key k delivered as %v, want %+v in order", ks, res.Done)
	}
	e.drain()
	st := e.state()
	if !reflect.DeepEqual(st.MainDead, []uint64{seqs[1]}) {
		t.Fatalf("dead letters left = %v, want only %d (key other)", st.MainDead, seqs[1])
	}

	// Discard all of the remaining key; then nothing is left.
	var disc admin.BatchResult
	e.do("POST", "/api/queues/main/dead/discard", `{"all":true}`, nil, &disc)
	if len(disc.Done) != 1 || disc.Done[0].Seq != seqs[1] {
		t.Fatalf("discard all = %+v", disc)
	}
	if st := e.state(); len(st.MainDead) != 0 {
		t.Fatalf("dead letters after discard all: %v", st.MainDead)
	}
}

// TestMalformedRequests: each bad request gets its 4xx with a JSON error
// saying what was wrong, and changes nothing.
func TestMalformedRequests(t *testing.T) {
	e := newEnv(t, nil, "bad")
	mainSeqs := e.enqueue(e.db, e.q, "bad", "good")
	e.drain()
	idleSeqs := e.enqueue(e.idleDB, e.idle, "p1", "p2", "p3")
	if err := e.idle.DeadLetter(context.Background(), idleSeqs[2], "set aside by the test"); err != nil {
		t.Fatal(err)
	}
	dead, pending := mainSeqs[0], idleSeqs[0]

	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		msg                      string
	}{
		{"unknown queue", "GET", "/api/queues/nope", "", nil, 404, `no queue named "nope"`},
		{"unknown queue replay", "POST", fmt.Sprintf("/api/queues/nope/dead/%d/replay", dead), "", nil, 404, `no queue named "nope"`},
		{"seq not a number", "GET", "/api/queues/main/dead/abc", "", nil, 400, `sequence number "abc"`},
		{"seq zero", "POST", "/api/queues/main/dead/0/replay", "", nil, 400, `sequence number "0"`},
		{"seq negative", "POST", "/api/queues/main/dead/-3/discard", "", nil, 400, `sequence number "-3"`},
		{"seq overflow", "GET", "/api/queues/main/entries/99999999999999999999999", "", nil, 400, "sequence number"},
		{"unknown seq", "POST", "/api/queues/main/dead/999/replay", "", nil, 404, "no dead letter 999"},
		{"unknown entry", "GET", "/api/queues/main/entries/999", "", nil, 404, "no pending entry 999"},
		{"replay pending", "POST", fmt.Sprintf("/api/queues/idle/dead/%d/replay", pending), "", nil, 409, "is pending, not a dead letter"},
		{"discard pending", "POST", fmt.Sprintf("/api/queues/idle/dead/%d/discard", pending), "", nil, 409, "is pending, not a dead letter"},
		{"limit zero", "GET", "/api/queues/main/dead?limit=0", "", nil, 400, `limit "0"`},
		{"limit huge", "GET", "/api/queues/main/entries?limit=5000", "", nil, 400, `limit "5000"`},
		{"limit text", "GET", "/api/queues/main/dead?limit=ten", "", nil, 400, `limit "ten"`},
		{"after negative", "GET", "/api/queues/main/dead?after=-1", "", nil, 400, `after "-1"`},
		{"unknown parameter", "GET", "/api/queues/main/dead?lmit=5", "", nil, 400, `unknown query parameter "lmit"`},
		{"bad encoding", "GET", fmt.Sprintf("/api/queues/main/dead/%d?encoding=rot13", dead), "", nil, 400, `encoding "rot13"`},
		{"batch without selector", "POST", "/api/queues/main/dead/replay", `{}`, nil, 400, "exactly one of"},
		{"batch with both", "POST", "/api/queues/main/dead/replay", `{"key":"bad","all":true}`, nil, 400, "exactly one of"},
		{"batch unknown field", "POST", "/api/queues/main/dead/discard", `{"key":"bad","dry_run":true}`, nil, 400, `unknown field "dry_run"`},
		{"batch bad json", "POST", "/api/queues/main/dead/discard", `{"key":`, nil, 400, "body"},
		{"batch trailing data", "POST", "/api/queues/main/dead/discard", `{"key":"bad"} {"all":true}`, nil, 400, "trailing data"},
		{"batch key not a string", "POST", "/api/queues/main/dead/replay", `{"key":7}`, nil, 400, "body"},
		{"replay with a body", "POST", fmt.Sprintf("/api/queues/main/dead/%d/replay", dead), `{"force":true}`, nil, 400, `unknown field "force"`},
		{"form post", "POST", fmt.Sprintf("/api/queues/main/dead/%d/discard", dead), "x=1", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"},
		{"post without csrf header", "POST", fmt.Sprintf("/api/queues/main/dead/%d/discard", dead), "", map[string]string{"X-Zest-Admin": ""}, 403, "X-Zest-Admin"},
		{"get on a post route", "GET", fmt.Sprintf("/api/queues/main/dead/%d/replay", dead), "", nil, 405, "method not allowed"},
		{"post on a get route", "POST", "/api/queues/main", "", nil, 405, "method not allowed"},
		{"delete", "DELETE", fmt.Sprintf("/api/queues/main/dead/%d", dead), "", nil, 405, "method not allowed"},
		{"unknown endpoint", "GET", "/api/nothing/here", "", nil, 404, "no API endpoint"},
		{"unknown static", "GET", "/secret", "", nil, 404, "not found"},
		{"static traversal", "GET", "/static/../errors.go", "", nil, 404, "not found"},
		{"static traversal escaped", "GET", "/static/%2e%2e/errors.go", "", nil, 404, "not found"},
		{"api traversal", "GET", "/api/queues/main/../../stats/x", "", nil, 404, "no API endpoint"},
		{"pause without mover", "POST", "/api/queues/idle/mover/pause", "", nil, 404, "has no mover"},
		{"huge body", "POST", "/api/queues/main/dead/replay", `{"key":"` + strings.Repeat("x", 70<<10) + `"}`, nil, 400, "body"},
	}
	before := e.state()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, body := e.do(c.method, c.path, c.body, c.hdr, nil)
			if st != c.status {
				t.Fatalf("%s %s: status %d, want %d (%s)", c.method, c.path, st, c.status, body)
			}
			var eb struct{ Error string }
			if err := json.Unmarshal([]byte(body), &eb); err != nil || !strings.Contains(eb.Error, c.msg) {
				t.Fatalf("%s %s: body %q, want a JSON error containing %q", c.method, c.path, body, c.msg)
			}
			if after := e.state(); !reflect.DeepEqual(before, after) {
				t.Fatalf("%s %s changed the state: %+v -> %+v", c.method, c.path, before, after)
			}
		})
	}
}

// TestReadOnly: every non-GET is refused with 403 and changes nothing; reads
// work; the page says it is read-only.
func TestReadOnly(t *testing.T) {
	e := newEnv(t, &admin.Options{ReadOnly: true, RootPath: "/ops"}, "bad")
	seqs := e.enqueue(e.db, e.q, "bad")
	e.drain()
	before := e.state()
	for _, p := range []string{
		fmt.Sprintf("/api/queues/main/dead/%d/replay", seqs[0]),
		fmt.Sprintf("/api/queues/main/dead/%d/discard", seqs[0]),
		"/api/queues/main/dead/replay", "/api/queues/main/dead/discard",
		"/api/queues/main/mover/pause", "/api/queues/main/mover/resume", "/", "/api/nothing",
	} {
		for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
			st, body := e.do(m, p, `{"all":true}`, nil, nil)
			if st != 403 || !strings.Contains(body, "read-only") {
				t.Fatalf("%s %s on a read-only handler: %d %s", m, p, st, body)
			}
		}
	}
	if after := e.state(); !reflect.DeepEqual(before, after) {
		t.Fatalf("read-only handler changed the state: %+v -> %+v", before, after)
	}
	var o admin.Overview
	if st, _ := e.do("GET", "/api/overview", "", nil, &o); st != 200 || !o.ReadOnly || len(o.Queues) != 2 {
		t.Fatalf("overview: %d %+v", st, o)
	}
	st, page := e.do("GET", "/", "", nil, nil)
	if st != 200 || !strings.Contains(page, `data-readonly="true"`) || !strings.Contains(page, `/ops/static/app.js`) {
		t.Fatalf("page: %d %s", st, page)
	}
}

// TestAuthorize: no credentials get 401 with a challenge, wrong ones 403,
// for the page and the API alike; a refused POST changes nothing.
func TestAuthorize(t *testing.T) {
	auth := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer s3cret" }
	e := newEnv(t, &admin.Options{Authorize: auth}, "bad")
	seqs := e.enqueue(e.db, e.q, "bad")
	e.drain()
	e.sink.succeed("bad")
	before := e.state()
	replay := fmt.Sprintf("/api/queues/main/dead/%d/replay", seqs[0])
	for _, p := range []string{"/", "/static/app.js", "/api/overview", replay} {
		m := "GET"
		if p == replay {
			m = "POST"
		}
		st, body := e.do(m, p, "", map[string]string{"Authorization": ""}, nil)
		if st != 401 || !strings.Contains(body, "unauthorized") {
			t.Fatalf("%s %s without credentials: %d %s", m, p, st, body)
		}
		st, body = e.do(m, p, "", map[string]string{"Authorization": "Bearer wrong"}, nil)
		if st != 403 || !strings.Contains(body, "forbidden") {
			t.Fatalf("%s %s with wrong credentials: %d %s", m, p, st, body)
		}
	}
	if after := e.state(); !reflect.DeepEqual(before, after) {
		t.Fatalf("refused requests changed the state: %+v -> %+v", before, after)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/overview", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without a WWW-Authenticate challenge")
	}
	if st, body := e.do("POST", replay, "", map[string]string{"Authorization": "Bearer s3cret"}, nil); st != 200 {
		t.Fatalf("authorized replay: %d %s", st, body)
	}
}

// TestConcurrentReplay: operators replaying the same dead letter at once get
// one success; the others get 404, and the queue gets one new entry.
func TestConcurrentReplay(t *testing.T) {
	e := newEnv(t, nil, "bad")
	seqs := e.enqueue(e.db, e.q, "bad")
	e.drain()
	headBefore := e.q.Head()
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/queues/main/dead/%d/replay", e.srv.URL, seqs[0]), nil)
			req.Header.Set("X-Zest-Admin", "1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses[i] = -1
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 404:
		default:
			t.Fatalf("statuses %v: want one 200 and 404s", statuses)
		}
	}
	if ok != 1 || e.q.Head() != headBefore+1 {
		t.Fatalf("statuses %v, head %d -> %d: want exactly one replay", statuses, headBefore, e.q.Head())
	}
}

// TestEngineStatsAndPaging: stats reflect the DB's commits; paging walks the
// dead letters without loss or repetition.
func TestEngineStatsAndPaging(t *testing.T) {
	e := newEnv(t, nil, "bad")
	keys := make([]string, 7)
	for i := range keys {
		keys[i] = "bad"
	}
	seqs := e.enqueue(e.db, e.q, keys...)
	e.drain()
	var es admin.EngineStats
	if st, body := e.do("GET", "/api/stats", "", nil, &es); st != 200 || es.Commits < 7 {
		t.Fatalf("stats: %d %s", st, body)
	}
	var got []uint64
	after := ""
	for range 10 {
		var p admin.Page[admin.EntrySummary]
		path := "/api/queues/main/dead?limit=3"
		if after != "" {
			path += "&after=" + after
		}
		if st, body := e.do("GET", path, "", nil, &p); st != 200 {
			t.Fatalf("%s: %d %s", path, st, body)
		}
		for _, it := range p.Items {
			got = append(got, it.Seq)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if !reflect.DeepEqual(got, seqs) {
		t.Fatalf("paged dead letters %v, want %v", got, seqs)
	}
}

// TestPauseResumeAndLanes: pause and resume go through to the mover and show
// in the summary; a key whose sink keeps failing shows as a blocked lane with
// its attempts and last error, and only its own lane is blocked.
func TestPauseResumeAndLanes(t *testing.T) {
	e := newEnv(t, nil)
	e.sink.mu.Lock()
	e.sink.retrying["down"] = true
	e.sink.mu.Unlock()
	seqs := e.enqueue(e.db, e.q, "down", "down", "up")
	e.sink.waitDelivered(t, 1) // "up" is not held back by "down"

	var sum admin.QueueSummary
	deadline := time.After(20 * time.Second)
	for {
		select {
		case <-e.sink.failures: // a retry happened; look again
		case <-deadline:
			t.Fatalf("no blocked lane shown: %+v", sum)
		}
		e.do("GET", "/api/queues/main", "", nil, &sum)
		if sum.LanesBlocked == 1 && len(sum.Lanes) > 0 && sum.Lanes[0].Failing && sum.Lanes[0].Attempts >= 1 {
			break
		}
	}
	l := sum.Lanes[0]
	if l.Key != "down" || l.Seq != seqs[0] || l.Pending != 2 || !strings.Contains(l.LastError, "sink is down for down") || l.FailingSince == nil || l.ErrorClass == "" {
		t.Fatalf("blocked lane = %+v", l)
	}

	var p struct{ Paused bool }
	if st, body := e.do("POST", "/api/queues/main/mover/pause", "", nil, &p); st != 200 || !p.Paused || !e.m.Paused() {
		t.Fatalf("pause: %d %s (mover paused: %v)", st, body, e.m.Paused())
	}
	e.do("GET", "/api/queues/main", "", nil, &sum)
	if !sum.Mover.Paused {
		t.Fatalf("summary after pause: %+v", sum.Mover)
	}
	e.sink.succeed("down")
	if st, body := e.do("POST", "/api/queues/main/mover/resume", "", nil, &p); st != 200 || p.Paused || e.m.Paused() {
		t.Fatalf("resume: %d %s", st, body)
	}
	got := e.sink.waitDelivered(t, 3)
	if got[1].Seq != seqs[0] || got[2].Seq != seqs[1] {
		t.Fatalf("after resume delivered %+v; want the key's entries in order", got)
	}
	e.drain()
	e.do("GET", "/api/queues/main", "", nil, &sum)
	if sum.LanesBlocked != 0 || len(sum.Lanes) != 0 || sum.Mover.Paused {
		t.Fatalf("summary after recovery: %+v", sum)
	}
}
