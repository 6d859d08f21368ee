package idem

import (
	"context"
	"time"

	"github.com/zest-stm/zest/stm"
)

// maxIdle bounds how long Sweep sleeps with nothing due, so that a clock
// step (Options.Now) is noticed.
const maxIdle = time.Minute

// Expire removes the tokens that have expired by now, in transactions of
// at most Options.SweepBatch tokens, as fast as it can, and returns how
// many it removed. It finds them through the expiry index, without looking
// at live tokens. On cancellation it returns ctx.Err(); the batch that was
// running is left in the index for the next call.
func (t *Tokens) Expire(ctx context.Context) (int, error) {
	now := t.opts.Now().UnixNano()
	total := 0
	for {
		looked, removed, err := t.sweepBatch(ctx, now)
		total += removed
		if err != nil || looked == 0 {
			return total, err
		}
	}
}

// Sweep removes expired tokens until ctx ends, then returns ctx.Err(). Run
// it in its own goroutine, once per Tokens:
//
//	go tokens.Sweep(ctx)
//
// It looks at most Options.SweepRate tokens a second, in transactions of at
// most Options.SweepBatch, and sleeps while nothing is due. A token is
// removed within Options.Granularity after it expired, unless the sweeper
// is behind. Sweep returns early with an error if the DB is closed or
// stopped.
func (t *Tokens) Sweep(ctx context.Context) error {
	t.opts.Logger.Info("idem: sweeper started", "table", t.name, "rate", t.opts.SweepRate, "batch", t.opts.SweepBatch)
	defer t.opts.Logger.Info("idem: sweeper stopped", "table", t.name)
	wait := func(d time.Duration, wake <-chan struct{}) error {
		if d <= 0 {
			return ctx.Err()
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
			return nil
		case <-timer.C:
			return nil
		}
	}
	for {
		now := t.opts.Now().UnixNano()
		looked, _, err := t.sweepBatch(ctx, now)
		if err != nil {
			if ctx.Err() == nil {
				t.opts.Logger.Warn("idem: sweeper stops", "table", t.name, "err", err)
			}
			return err
		}
		if looked > 0 {
			// Pace: looked tokens at SweepRate a second.
			if err := wait(time.Duration(looked)*time.Second/time.Duration(t.opts.SweepRate), nil); err != nil {
				return err
			}
			continue
		}
		d := maxIdle
		if at, ok := t.ix.next(); ok {
			d = min(d, time.Duration(at-now))
		}
		if err := wait(max(d, time.Millisecond), t.ix.wake); err != nil {
			return err
		}
	}
}

// sweepBatch takes one due batch from the expiry index and removes, in one
// transaction, those of its tokens that have expired by now. A key whose
// token is gone, linked, or renewed is dropped from the index: whatever
// renewed or settled the token indexed it again.
func (t *Tokens) sweepBatch(ctx context.Context, now int64) (looked, removed int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	b, keys := t.ix.popDue(now, t.opts.SweepBatch)
	if len(keys) == 0 {
		return 0, 0, nil
	}
	removed, err = stm.RunValue(ctx, t.db, func(tx *stm.Tx) (int, error) {
		n := 0
		for _, k := range keys {
			tok, ok := t.tab.Get(tx, k)
			if ok && tok.expires != 0 && tok.expires <= now {
				t.tab.Delete(tx, k)
				n++
			}
		}
		return n, nil
	})
	if err != nil {
		t.ix.putBack(b, keys)
		return 0, 0, ctxErr(ctx, err, "sweep")
	}
	t.stats.expired.Add(uint64(removed))
	t.opts.Logger.Debug("idem: swept", "table", t.name, "looked", len(keys), "removed", removed)
	return len(keys), removed, nil
}
