package admin_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/saga"
)

// chromium finds the browser: $ZEST_CHROMIUM, /usr/bin/chromium, or chromium
// on PATH. scripts/chromium.sh installs it. Under CI=true a missing browser
// fails the test; elsewhere the test skips and says how to get one.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ZEST_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	msg := "Chromium not found (looked at $ZEST_CHROMIUM, /usr/bin/chromium, PATH): run scripts/chromium.sh, which installs Debian's chromium package"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// shared is the one headless Chromium of the package's browser tests: each
// test gets its own tab. Starting a browser is the slow part.
var shared struct {
	once    sync.Once
	ctx     context.Context // the browser's first tab; tabs derive from it
	cancel  func()
	profile string
	err     error
}

// TestMain stops the shared browser after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cancel != nil {
		shared.cancel()
		os.RemoveAll(shared.profile)
	}
	os.Exit(code)
}

// browser returns a chromedp context for a new tab of the shared headless
// Chromium (started with a fresh profile on first use), closed by the
// test's cleanup.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	shared.once.Do(func() {
		shared.profile, shared.err = os.MkdirTemp("", "zest-chromium-")
		if shared.err != nil {
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-quic", true),
			chromedp.UserDataDir(shared.profile),
			chromedp.WindowSize(1280, 1000),
		)
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(actx)
		shared.ctx, shared.cancel = ctx, func() { cancel(); acancel() }
		// The first run starts the browser; it lives as long as ctx, so no
		// timeout here (see chromedp.Run). Later steps get one each (do).
		shared.err = chromedp.Do(ctx)
	})
	if shared.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("starting Chromium: %v", shared.err)
		}
		t.Skipf("Chromium does not start here: %v", shared.err)
	}
	tab, cancel := chromedp.NewContext(shared.ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return tab
}

// do runs steps in the tab with a deadline.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the tab.
func eval[T any](t *testing.T, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (kept with go test -artifacts -outputdir DIR)", p)
}

// waitJS waits until a JavaScript condition holds in the page.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
}

// deadCount is the page's dead-letter counter of queue main.
const deadCount = `document.querySelector('[data-queue="main"] [data-stat="dead"] .value')?.textContent`

const xssKey = `<img src=x onerror="window.__xss=1">`

// TestBrowserReplay drives the page in Chromium: a dead letter appears after
// a sink failure; replaying it from the page (with its confirmation) gets it
// delivered; a key holding HTML is shown as text and never runs.
func TestBrowserReplay(t *testing.T) {
	ctx := browser(t)
	e := newEnv(t, &admin.Options{RootPath: "/admin", RefreshInterval: 200}, "bad", xssKey)
	seqs := e.enqueue(e.db, e.q, "a", "bad", xssKey, "c")
	e.drain()
	bad := seqs[1]
	row := fmt.Sprintf(`[data-queue="main"] tr.dead[data-seq="%d"]`, bad)

	do(t, ctx, "waiting for the dead letters on the page",
		chromedp.Navigate(e.srv.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.CSS(row)),
		waitJS(deadCount+` === "2"`),
	)
	xssRan := eval[bool](t, ctx, `window.__xss === 1`)
	keyText := eval[string](t, ctx, fmt.Sprintf(`document.querySelector('tr.dead[data-seq="%d"] td:nth-child(3)').textContent`, seqs[2]))
	if xssRan || keyText != xssKey {
		t.Fatalf("a key holding HTML: ran=%v, shown as %q; want it shown as text, not run", xssRan, keyText)
	}
	screenshot(t, ctx, "dead-letter.png")

	// Cancel first: nothing happens.
	do(t, ctx, "cancelling a replay",
		chromedp.Click(chromedp.CSS(row+" button.act-replay")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-cancel")),
		chromedp.WaitNotVisible(chromedp.ID("confirm")),
	)
	if st := e.state(); len(st.MainDead) != 2 {
		t.Fatalf("a cancelled replay changed the dead letters: %v", st.MainDead)
	}

	e.sink.succeed("bad")
	do(t, ctx, "replaying from the page",
		chromedp.Click(chromedp.CSS(row+" button.act-replay")),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")),
	)
	got := e.sink.waitDelivered(t, 3)
	if got[2].Key != "bad" || got[2].Seq <= seqs[3] {
		t.Fatalf("delivered %+v, want the replayed entry of key bad with a new sequence number", got[2])
	}
	do(t, ctx, "waiting for the page to show the delivery",
		waitJS(`document.querySelector('[data-queue="main"] [data-stat="delivered"] .value')?.textContent === "3"`),
		waitJS(deadCount+` === "1"`),
		waitJS(fmt.Sprintf(`document.querySelector('[data-queue="main"] tr.dead[data-seq="%d"]') === null`, bad)),
		waitJS(`document.getElementById("status").textContent.startsWith("replayed #")`),
	)
	screenshot(t, ctx, "replayed.png")

	// Pause the mover from the page; an entry committed meanwhile is
	// delivered once it is resumed from the page.
	do(t, ctx, "pausing the mover from the page",
		chromedp.Click(chromedp.CSS(`[data-queue="main"] button.act-pause`)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")),
		waitJS(`document.querySelector('[data-queue="main"] .badge')?.textContent === "mover paused"`),
	)
	if !e.m.Paused() {
		t.Fatal("the page says paused; the mover is not")
	}
	late := e.enqueue(e.db, e.q, "late")
	do(t, ctx, "resuming the mover from the page",
		waitJS(fmt.Sprintf(`document.querySelector('[data-queue="main"] tr.pending[data-seq="%d"]') !== null`, late[0])),
		chromedp.Click(chromedp.CSS(`[data-queue="main"] button.act-resume`)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-ok")),
	)
	if got := e.sink.waitDelivered(t, 4); got[3].Seq != late[0] {
		t.Fatalf("after resume delivered %+v, want seq %d", got[3], late[0])
	}
	do(t, ctx, "waiting for the page to show the mover running",
		waitJS(`document.querySelector('[data-queue="main"] .badge')?.textContent === "mover running"`),
		waitJS(`document.querySelector('[data-queue="main"] [data-stat="delivered"] .value')?.textContent === "4"`),
	)
}

// TestBrowserReadOnly: a read-only page offers no actions, and a POST made
// from the page's own origin (what a tampered page would send) is refused.
func TestBrowserReadOnly(t *testing.T) {
	ctx := browser(t)
	e := newEnv(t, &admin.Options{ReadOnly: true, RefreshInterval: 200}, "bad")
	seqs := e.enqueue(e.db, e.q, "bad")
	e.drain()
	before := e.state()
	do(t, ctx, "loading the read-only page",
		chromedp.Navigate(e.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr.dead[data-seq="%d"]`, seqs[0]))),
	)
	buttons := eval[int](t, ctx, `document.querySelectorAll("button.act").length`)
	mode := eval[string](t, ctx, `document.getElementById("mode").textContent`)
	status := eval[int](t, ctx, fmt.Sprintf(`fetch("/api/queues/main/dead/%d/replay", {method: "POST", headers: {"X-Zest-Admin": "1"}}).then(r => r.status)`, seqs[0]), chromedp.EvalAwaitPromise)
	if buttons != 0 || mode != "read-only" || status != 403 {
		t.Fatalf("read-only page: %d action buttons, mode %q, POST status %d; want 0, read-only, 403", buttons, mode, status)
	}
	// Inspecting is reading: it works in read-only mode.
	do(t, ctx, "showing a dead letter",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr.dead[data-seq="%d"] button.act-show`, seqs[0]))),
		chromedp.WaitVisible(chromedp.ID("detail")),
		waitJS(`document.getElementById("detail-body").textContent.includes('"data": "payload of bad"')`),
	)
	if after := e.state(); !reflect.DeepEqual(before, after) {
		t.Fatalf("read-only page changed the state: %+v -> %+v", before, after)
	}
	screenshot(t, ctx, "read-only.png")
}

// TestBrowserSections drives the saga and token panels: a stuck saga is
// listed and resolved from the page with a note (recorded in its history
// with the actor), and a token is looked up by its three fields and
// forgotten.
func TestBrowserSections(t *testing.T) {
	ctx := browser(t)
	se := newSagaEnv(t, &admin.Options{RefreshInterval: 200, Actor: func(*http.Request) string { return "page-operator" }})
	se.undoBroken.Store(false)
	row := `[data-section="sagas"] tr.item`
	do(t, ctx, "resolving the stuck saga from the page",
		chromedp.Navigate(se.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(row)),
		waitJS(`document.querySelector('[data-section="sagas"] [data-stat="stuck"] .value')?.textContent === "1"`),
		chromedp.Click(chromedp.CSS(row+` button.act-section`)), // the first action: Retry
		chromedp.WaitVisible(chromedp.ID("confirm-note")),
		chromedp.SendKeys(chromedp.ID("confirm-note"), "refunds fixed by ops"),
		chromedp.Click(chromedp.ID("confirm-ok")),
		waitJS(`document.getElementById("status").textContent === "Retry: done"`),
	)
	wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := se.r.Wait(wctx, "o-1")
	if err != nil || info.Phase != saga.Compensated {
		t.Fatalf("after the page's retry: %v %v", info.Phase, err)
	}
	resolved := 0
	for _, ev := range info.History {
		if ev.Kind == "resolved" {
			resolved++
			if ev.Who != "page-operator" || !strings.Contains(ev.Note, "refunds fixed by ops") {
				t.Fatalf("resolution recorded as %+v", ev)
			}
		}
	}
	if resolved != 1 {
		t.Fatalf("%d resolutions in the history, want 1: %+v", resolved, info.History)
	}
	do(t, ctx, "waiting for the saga panel to empty",
		waitJS(`document.querySelector('[data-section="sagas"] [data-stat="stuck"] .value')?.textContent === "0"`),
		waitJS(`document.querySelector('[data-section="sagas"] tr.item') === null`),
	)

	tok := `[data-section="tokens"] `
	do(t, ctx, "looking up and forgetting a token",
		chromedp.SendKeys(chromedp.CSS(tok+`input[name="scope"]`), "u1"),
		chromedp.SendKeys(chromedp.CSS(tok+`input[name="id"]`), "pay-7"),
		chromedp.SendKeys(chromedp.CSS(tok+`input[name="scene"]`), "pay"),
		chromedp.Click(chromedp.CSS(tok+`form.lookup button[type="submit"]`)),
		waitJS(`document.querySelector('[data-section="tokens"] .lookup-out').textContent.includes('"state": "done"')`),
	)
	screenshot(t, ctx, "sections.png")
	do(t, ctx, "forgetting the token",
		chromedp.Click(chromedp.CSS(tok+`.lookup-acts button.act-section`)),
		chromedp.WaitVisible(chromedp.ID("confirm-note")),
		chromedp.SendKeys(chromedp.ID("confirm-note"), "customer retries"),
		chromedp.Click(chromedp.ID("confirm-ok")),
		waitJS(`document.getElementById("status").textContent === "Forget: done"`),
	)
	if _, err := se.tokens.Lookup(context.Background(), idem.Key{Scope: "u1", ID: "pay-7", Scene: "pay"}); !errors.Is(err, idem.ErrNotFound) {
		t.Fatalf("token after the page's forget: %v", err)
	}
}
