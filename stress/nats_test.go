package stress

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/internal/natstest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/natssink"
	"github.com/zest-stm/zest/stm"
)

// natsChildPrefix marks the child of TestPurchasesToNATSWithFaults in
// ZEST_STRESS_CHILD (the value is the prefix and the queue directory).
const natsChildPrefix = "nats:"

var errRolledBack = errors.New("rolled back on purpose")

// runNatsChild is the app process of the NATS scenario: 4 goroutines
// commit purchases (one in 5 rolls back on purpose), each enqueuing a
// message for its player's subject; the mover publishes them. It prints
// "ack <id>" after each committed purchase, until it is killed.
func runNatsChild(dir string) {
	db, err := stm.Open(&stm.Options{Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	sink, err := natssink.New(nil) // ZEST_NATS_URL, ZEST_NATS_STREAM
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	m, err := mover.New(q, map[string]mover.Sink{"nats": sink},
		&mover.Options{Concurrency: 8, BaseBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, MaxAttempts: 100_000, Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() { _ = m.Run(context.Background()) }()
	seed, _ := strconv.ParseUint(os.Getenv("ZEST_STRESS_SEED"), 10, 64)
	fmt.Println("ready")
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(os.Getpid())<<8|uint64(g)))
			for n := 0; ; n++ {
				id := fmt.Sprintf("%d-%d-%d", os.Getpid(), g, n)
				rollback := r.IntN(5) == 0
				subject := fmt.Sprintf("SHOP.p%02d", r.IntN(players))
				err := db.Run(context.Background(), func(tx *stm.Tx) error {
					if err := q.Enqueue(tx, natssink.Publish(subject, []byte(id), nil)); err != nil {
						return err
					}
					if rollback {
						return errRolledBack
					}
					return nil
				})
				switch {
				case err == nil:
					mu.Lock()
					fmt.Println("ack", id)
					mu.Unlock()
				case !errors.Is(err, errRolledBack):
					fmt.Println("error", err)
					os.Exit(1)
				}
				time.Sleep(time.Millisecond) // pace the load (not a synchronisation)
			}
		})
	}
	wg.Wait()
}

// TestPurchasesToNATSWithFaults runs a shop in a subprocess that commits
// purchases and publishes them to NATS JetStream through the queue; it
// kills the shop with SIGKILL and restarts it at random moments, and shuts
// the NATS server down and restarts it at random moments. The stream's
// duplicate window is 100ms (the minimum), so only the per-subject chain
// keeps duplicates out. After a final drain it checks:
//   - the stream holds every entry the queue ever committed (Zest-Seq 1 ..
//     head), each exactly once, and nothing else;
//   - per subject, messages are in commit (Zest-Seq) order;
//   - every purchase acknowledged to the client is there, and no purchase
//     that rolled back;
//   - nothing was dead-lettered.
func TestPurchasesToNATSWithFaults(t *testing.T) {
	s := newScenario(t, "purchases-to-nats faults")
	srv := natstest.Start(t, nil)
	dir := t.TempDir()
	ctx := context.Background()
	admin, err := natssink.New(&natssink.Options{URL: srv.URL, Stream: "SHOP", CreateStream: true, DuplicateWindow: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = admin.Check(cctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(s.seed, 1))
	acked := map[string]bool{}
	var kills, outages uint64
	end := time.Now().Add(*duration)
	for round := 0; round == 0 || until(end); round++ {
		killAt := 10 + r.IntN(150)
		outageAt, outageEnd := -1, -1
		if r.IntN(2) == 0 {
			outageAt = r.IntN(killAt)
			outageEnd = outageAt + 5 + r.IntN(60)
		}
		seen := 0
		crashtest.Run(t, []string{childEnv + "=" + natsChildPrefix + dir, "ZEST_STRESS_SEED=" + strconv.FormatUint(s.seed+uint64(round), 10),
			"ZEST_NATS_URL=" + srv.URL, "ZEST_NATS_STREAM=SHOP"}, func(line string) bool {
			id, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				return false
			}
			acked[id] = true
			seen++
			switch seen {
			case outageAt:
				srv.Stop()
				outages++
				s.logf("round %d: NATS stopped after %d acks", round, seen)
			case outageEnd:
				if err := srv.Restart(); err != nil {
					t.Fatal(err)
				}
				s.logf("round %d: NATS restarted after %d acks", round, seen)
			}
			return seen == killAt
		})
		kills++
		if err := srv.Restart(); err != nil { // no-op if it is running
			t.Fatal(err)
		}
		s.logf("round %d: app killed after %d acks", round, seen)
	}

	// Final drain, in this process.
	db, err := stm.Open(&stm.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := natssink.New(&natssink.Options{URL: srv.URL, Stream: "SHOP"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mover.New(q, map[string]mover.Sink{"nats": sink}, &mover.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	if err := m.WaitDrained(dctx); err != nil {
		s.violation("final drain: %v (mover %+v)", err, m.Stats())
	}
	cancel()
	_ = m.Shutdown(ctx)
	<-runDone
	s.checkStream(sink, q, acked)
	dead, _ := q.DeadLetters(ctx, 0, 100)
	for _, d := range dead {
		s.violation("dead letter %d %s: %s", d.Seq, d.Key, d.Reason)
	}
	s.row.Transactions = q.Head()
	s.row.Entries = q.Head()
	// Close everything before finish counts the goroutines left.
	_ = q.Close()
	sink.Close()
	admin.Close()
	srv.Stop()
	s.row.Faults = kills + outages
	s.row.Deliveries = m.Stats().Delivered
	s.row.Note = fmt.Sprintf("%d app kills, %d NATS outages, %d acked purchases; deliveries: the final drain's", kills, outages, len(acked))
	s.finish()
}

func (s *scenario) checkStream(sink *natssink.Sink, q *effectqueue.Queue, acked map[string]bool) {
	ctx := context.Background()
	st, err := sink.JetStream().Stream(ctx, "SHOP")
	if err != nil {
		s.violation("stream: %v", err)
		return
	}
	bySeq := map[uint64]int{}
	lastOnSubject := map[string]uint64{}
	found := map[string]bool{}
	for seq := uint64(1); ; seq++ {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("SHOP.>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			s.violation("read stream at %d: %v", seq, err)
			return
		}
		seq = msg.Sequence
		if w := msg.Header.Get(natssink.HeaderWriter); w != q.ID() {
			s.violation("message %d from writer %q, not the queue %q", msg.Sequence, w, q.ID())
			continue
		}
		zs, _ := strconv.ParseUint(msg.Header.Get(natssink.HeaderSeq), 10, 64)
		bySeq[zs]++
		if bySeq[zs] == 2 {
			s.violation("entry %d is in the stream twice (message %d)", zs, msg.Sequence)
		}
		if zs <= lastOnSubject[msg.Subject] {
			s.violation("subject %s: entry %d after entry %d", msg.Subject, zs, lastOnSubject[msg.Subject])
		}
		lastOnSubject[msg.Subject] = zs
		found[string(msg.Data)] = true
	}
	head := q.Head()
	for zs := uint64(1); zs <= head; zs++ {
		if bySeq[zs] == 0 {
			s.violation("committed entry %d is not in the stream", zs)
		}
	}
	if n := uint64(len(bySeq)); n != head {
		s.violation("the stream holds %d entries, the queue committed %d", n, head)
	}
	for id := range acked {
		if !found[id] {
			s.violation("acked purchase %s is not in the stream", id)
		}
	}
	s.logf("stream: %d entries of %d committed, %d acked purchases", len(bySeq), head, len(acked))
}
