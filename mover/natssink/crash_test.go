package natssink_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/natssink"
	"github.com/zest-stm/zest/stm"
)

const childEnv = "ZEST_NATSSINK_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		moverChild(dir)
		return
	}
	os.Exit(m.Run())
}

// printing wraps a sink and prints "applied <seq>" after each confirmed
// publish, so that the parent can kill the process between a publish and
// its ack.
type printing struct {
	mover.Sink
	mu sync.Mutex
}

func (p *printing) Apply(ctx context.Context, d mover.Delivery) error {
	err := p.Sink.Apply(ctx, d)
	if err == nil {
		p.mu.Lock()
		fmt.Printf("applied %d\n", d.Seq)
		p.mu.Unlock()
	}
	return err
}

// moverChild runs a mover on the queue in dir against the server and
// stream named by ZEST_NATS_*, until killed.
func moverChild(dir string) {
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	sink, err := natssink.New(nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	m, err := mover.New(q, map[string]mover.Sink{"nats": &printing{Sink: sink}}, &mover.Options{Concurrency: 8, Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_ = m.Run(context.Background())
}

// TestDelivererKilled: the process publishing entries is killed with
// SIGKILL right after a publish was confirmed (before its ack), six times,
// and restarted. The stream's duplicate window is 100ms, the server's
// minimum, and every restart takes longer, so Nats-Msg-Id cannot hide a
// duplicate: the per-subject chain must. At the end every committed entry
// is in the stream exactly once, in per-subject commit order.
func TestDelivererKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: spawns and kills processes")
	}
	e := setup(t, &natssink.Options{DuplicateWindow: 100 * time.Millisecond})
	dir := t.TempDir()
	require.NoError(t, e.q.Close())
	var err error
	e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: dir, Logger: quiet})
	require.NoError(t, err)
	want := map[string][]uint64{}
	const total, subjects = 300, 6
	for i := 0; i < total; i += 10 {
		var batch []effectqueue.Entry
		for j := i; j < i+10; j++ {
			batch = append(batch, natssink.Publish(fmt.Sprintf("ZEST.s%d", j%subjects), []byte(fmt.Sprint(j)), nil))
		}
		for k, s := range e.commit(t, batch...) {
			want[batch[k].Key] = append(want[batch[k].Key], s)
		}
	}
	require.NoError(t, e.q.Close())

	s := rand.Uint64()
	t.Logf("seed %d", s)
	r := rand.New(rand.NewPCG(s, 0))
	for round := range 6 {
		killAfter := 1 + r.IntN(total/8)
		applied := 0
		crashtest.Run(t, []string{childEnv + "=" + dir, "ZEST_NATS_URL=" + e.srv.URL, "ZEST_NATS_STREAM=ZEST"}, func(line string) bool {
			if !strings.HasPrefix(line, "applied ") {
				return false
			}
			applied++
			return applied == killAfter
		})
		t.Logf("round %d: killed after %d publishes (%d seen)", round, killAfter, applied)
	}
	e.db, err = stm.Open(nil)
	require.NoError(t, err)
	e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: dir, Logger: quiet})
	require.NoError(t, err)
	defer e.q.Close()
	fresh, err := natssink.New(&natssink.Options{URL: e.srv.URL, Stream: "ZEST"})
	require.NoError(t, err)
	defer fresh.Close()
	m, stop := e.mover(t, fresh, nil)
	drain(t, m)
	require.NoError(t, stop())
	checkExactlyOnceInOrder(t, e, want)
	dead, _ := e.q.DeadLetters(context.Background(), 0, 10)
	assert.Empty(t, dead)
}
