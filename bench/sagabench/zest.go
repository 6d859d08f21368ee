package main

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/saga"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
	"github.com/zest-stm/zest/whilecommit"
)

// zestEngine runs the flow with package saga.
type zestEngine struct {
	db     *stm.DB
	q      *effectqueue.Queue
	r      *saga.Runner
	m      *mover.Mover
	flow   *saga.Flow[state]
	cancel context.CancelFunc
	bg     sync.WaitGroup

	mu      sync.Mutex
	waiters map[string]chan saga.Outcome
}

type state struct {
	Account string
	Amount  int
}

func (z *zestEngine) name() string { return "zest" }

func (z *zestEngine) setup(dir, url string, c int) error {
	var err error
	if z.db, err = stm.Open(&stm.Options{Logger: quiet}); err != nil {
		return err
	}
	if z.q, err = effectqueue.Open(z.db, &effectqueue.Options{Dir: dir, Logger: quiet}); err != nil {
		return err
	}
	counters, err := table.NewDurable[string, int](z.db, "counters", nil)
	if err != nil {
		return err
	}
	if z.r, err = saga.New(z.db, z.q, &saga.Options{Logger: quiet}); err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	bump := func(key string) func(tx *stm.Tx, s *state) error {
		return func(tx *stm.Tx, s *state) error {
			counters.Update(tx, key+s.Account, func(v int, _ bool) (int, bool) { return v + s.Amount, true })
			return nil
		}
	}
	z.flow, err = saga.Define("bench", 1,
		saga.Local("reserve", bump("reserved:"), nil),
		saga.Remote("charge", func(ctx context.Context, c saga.Call, s *state) error {
			return charge(ctx, hc, url, c.OpID)
		}, nil),
		saga.Local("confirm", bump("confirmed:"), nil),
	)
	if err != nil {
		return err
	}
	z.waiters = map[string]chan saga.Outcome{}
	err = z.flow.Register(z.r, &saga.FlowOptions[state]{OnEnd: func(tx *stm.Tx, id string, out saga.Outcome, _ *state) error {
		whilecommit.Do(tx, func() { // after the end is durable
			z.mu.Lock()
			ch := z.waiters[id]
			delete(z.waiters, id)
			z.mu.Unlock()
			if ch != nil {
				ch <- out
			}
		})
		return nil
	}})
	if err != nil {
		return err
	}
	if z.m, err = mover.New(z.q, map[string]mover.Sink{saga.Kind: z.r.Sink()}, &mover.Options{Concurrency: max(16, c), Logger: quiet}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	z.cancel = cancel
	z.bg.Go(func() { _ = z.m.Run(ctx) })
	z.bg.Go(func() { _ = z.r.Run(ctx) })
	return nil
}

func (z *zestEngine) run(ctx context.Context, id string) error {
	ch := make(chan saga.Outcome, 1)
	z.mu.Lock()
	z.waiters[id] = ch
	z.mu.Unlock()
	err := z.db.Run(ctx, func(tx *stm.Tx) error { return z.flow.Start(tx, id, state{Account: id, Amount: 1}) })
	if err != nil {
		return err
	}
	select {
	case out := <-ch:
		if out != saga.Done {
			return errors.New("saga ended " + string(out))
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (z *zestEngine) close() {
	sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
	defer c()
	_ = z.m.Shutdown(sctx)
	z.cancel()
	z.bg.Wait()
	_ = z.q.Close()
	_ = z.db.Close()
}
