package main

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/cschleiden/go-workflows/backend"
	"github.com/cschleiden/go-workflows/backend/sqlite"
	"github.com/cschleiden/go-workflows/client"
	"github.com/cschleiden/go-workflows/worker"
	"github.com/cschleiden/go-workflows/workflow"
)

// gwEngine runs the flow as a go-workflows workflow of three activities on
// the SQLite backend. Its polling intervals are lowered from their 200ms
// defaults to -gw-poll (default 1ms), and its worker runs in
// SingleWorkerMode.
type gwEngine struct {
	b      backend.Backend
	c      *client.Client
	w      *worker.Worker
	cancel context.CancelFunc
	hc     *http.Client
	url    string

	mu       sync.Mutex
	counters map[string]int
	waiters  map[string]chan struct{}
}

func (g *gwEngine) name() string { return "go-workflows" }

func (g *gwEngine) setup(dir, url string, c int) error {
	g.url = url
	g.hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	g.counters = map[string]int{}
	g.waiters = map[string]chan struct{}{}
	g.b = sqlite.NewSqliteBackend(filepath.Join(dir, "gw.sqlite"), sqlite.WithBackendOptions(backend.WithLogger(quiet)))
	opts := worker.DefaultOptions
	opts.SingleWorkerMode = true
	opts.WorkflowPollers = 2
	opts.ActivityPollers = 2
	opts.WorkflowPollingInterval = gwPoll
	opts.ActivityPollingInterval = gwPoll
	g.w = worker.New(g.b, &opts)
	g.w.RegisterWorkflow(g.flow)
	g.w.RegisterActivity(g.Reserve)
	g.w.RegisterActivity(g.Charge)
	g.w.RegisterActivity(g.Confirm)
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	if err := g.w.Start(ctx); err != nil {
		return err
	}
	g.c = client.New(g.b)
	return nil
}

// flow is the workflow: reserve, charge (remote), confirm.
func (g *gwEngine) flow(ctx workflow.Context, id string) error {
	if _, err := workflow.ExecuteActivity[int](ctx, workflow.DefaultActivityOptions, g.Reserve, id).Get(ctx); err != nil {
		return err
	}
	if _, err := workflow.ExecuteActivity[int](ctx, workflow.DefaultActivityOptions, g.Charge, id).Get(ctx); err != nil {
		return err
	}
	_, err := workflow.ExecuteActivity[int](ctx, workflow.DefaultActivityOptions, g.Confirm, id).Get(ctx)
	return err
}

// Reserve is the first local step.
func (g *gwEngine) Reserve(ctx context.Context, id string) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counters["reserved:"+id]++
	return g.counters["reserved:"+id], nil
}

// Charge is the remote step.
func (g *gwEngine) Charge(ctx context.Context, id string) (int, error) {
	return 1, charge(ctx, g.hc, g.url, "bench/"+id+"/charge/do")
}

// Confirm is the last local step; it reports the saga's completion.
func (g *gwEngine) Confirm(ctx context.Context, id string) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counters["confirmed:"+id]++
	if ch := g.waiters[id]; ch != nil {
		delete(g.waiters, id)
		close(ch)
	}
	return g.counters["confirmed:"+id], nil
}

func (g *gwEngine) run(ctx context.Context, id string) error {
	ch := make(chan struct{})
	g.mu.Lock()
	g.waiters[id] = ch
	g.mu.Unlock()
	_, err := g.c.CreateWorkflowInstance(ctx, client.WorkflowInstanceOptions{InstanceID: id}, g.flow, id)
	if err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gwEngine) close() {
	g.cancel()
	_ = g.w.WaitForCompletion()
	_ = g.b.Close()
}

// gwPoll is go-workflows' polling interval (-gw-poll).
var gwPoll = time.Millisecond
