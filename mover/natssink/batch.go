package natssink

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zest-stm/zest/mover"
)

// ApplyBatch implements mover.BatchSink: it publishes the head entries of
// several subjects (one entry per subject) without waiting for each ack
// before the next publish, then waits for all the acks. Each publish is
// made exactly as Apply makes it (operation id, chain on the subject's last
// sequence, writer and entry headers), so the guarantees are Apply's; only
// the round trips overlap. A delivery that needs more than the plain path
// (an unknown kind or subject, a chain the server refuses) is handed to
// Apply, which resolves it on its own.
func (s *Sink) ApplyBatch(ctx context.Context, ds []mover.Delivery) []error {
	errs := make([]error, len(ds))
	bctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	st, err := s.stream(bctx)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	// Read, in parallel, the chains of subjects this process has not
	// published to yet.
	var wg sync.WaitGroup
	plain := make([]bool, len(ds))
	for i, d := range ds {
		if d.Kind != KindPublish || !validSubject(d.Key) {
			continue
		}
		plain[i] = true
		if _, known := s.lastOf(d.Key); known {
			continue
		}
		wg.Go(func() {
			m, err := lastMsg(bctx, st, d.Key)
			if err != nil {
				errs[i] = err
				return
			}
			s.setLast(d.Key, tipOf(m))
		})
	}
	wg.Wait()
	type inFlight struct {
		i   int
		fut jetstream.PubAckFuture
	}
	pubs := make([]inFlight, 0, len(ds))
	for i, d := range ds {
		if !plain[i] || errs[i] != nil {
			continue
		}
		last, known := s.lastOf(d.Key)
		switch {
		case !known:
			plain[i] = false // forgotten meanwhile: Apply reads it again
			continue
		case last.covers(d):
			continue // on the subject already (a replay): done
		}
		fut, err := s.js.PublishMsgAsync(s.message(d.Key, d), s.publishOpts(last.stream, d)...)
		if err != nil {
			s.forget(d.Key)
			errs[i] = classify(fmt.Errorf("natssink: publish %s (entry %d): %w", d.Key, d.Seq, err))
			continue
		}
		pubs = append(pubs, inFlight{i, fut})
	}
	for _, p := range pubs {
		d := ds[p.i]
		select {
		case ack := <-p.fut.Ok():
			s.setLast(d.Key, tip{stream: ack.Sequence, writer: d.Writer, seq: d.Seq})
		case err := <-p.fut.Err():
			if wrongLast(err) {
				plain[p.i] = false // Apply resolves the chain
				continue
			}
			s.forget(d.Key)
			errs[p.i] = classify(fmt.Errorf("natssink: publish %s (entry %d): %w", d.Key, d.Seq, err))
		case <-bctx.Done():
			select {
			case ack := <-p.fut.Ok(): // came in time after all
				s.setLast(d.Key, tip{stream: ack.Sequence, writer: d.Writer, seq: d.Seq})
				continue
			default:
			}
			// The ack may still come: the next attempt checks the chain.
			s.forget(d.Key)
			errs[p.i] = classify(fmt.Errorf("natssink: publish %s (entry %d): %w", d.Key, d.Seq, bctx.Err()))
		}
	}
	for i, d := range ds {
		if !plain[i] && errs[i] == nil {
			errs[i] = s.Apply(ctx, d)
		}
	}
	return errs
}

var _ mover.BatchSink = (*Sink)(nil)
