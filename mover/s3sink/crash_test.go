package s3sink_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/s3sink"
	"github.com/zest-stm/zest/stm"
)

const childEnv = "ZEST_MOVER_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		moverChild(dir)
		return
	}
	os.Exit(m.Run())
}

// printing wraps a sink and prints "applied <seq>" after each confirmed
// apply, so that the parent can kill the process in the middle of a run.
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

func (p *printing) Supersedes(newer, older effectqueue.Item) bool {
	return p.Sink.(mover.Superseder).Supersedes(newer, older)
}

// moverChild runs a mover on the queue in dir against the MinIO named in
// the environment, until killed.
func moverChild(dir string) {
	db, _ := stm.Open(nil)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	sink, err := s3sink.New(nil) // endpoint and credentials from ZEST_S3_*
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	m, err := mover.New(q, map[string]mover.Sink{"s3": &printing{Sink: sink}}, &mover.Options{Concurrency: 8, Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_ = m.Run(context.Background())
}

// TestDelivererKilled: the process delivering entries is killed with
// SIGKILL mid-run, four times, and restarted; at the end every committed
// entry was delivered and no object shows a duplicate or rolled-back
// version (checked with bucket versioning).
func TestDelivererKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: spawns and kills processes")
	}
	e := setup(t, nil)
	e.bucket(t, "crash", true)
	const distinct, hot, updates = 150, 4, 40
	for i := range distinct {
		e.commit(t, s3sink.Put("crash", fmt.Sprintf("d%03d", i), []byte("once"), "", nil))
	}
	for u := range updates {
		var b []effectqueue.Entry
		for h := range hot {
			b = append(b, s3sink.Put("crash", fmt.Sprintf("hot%d", h), []byte(strconv.Itoa(u)), "", nil))
		}
		e.commit(t, b...)
	}
	require.NoError(t, e.q.Close())

	s := rand.Uint64()
	t.Logf("seed %d", s)
	r := rand.New(rand.NewPCG(s, 0))
	total := distinct + hot*updates
	for round := range 4 {
		killAfter := 5 + r.IntN(total/6)
		applied := 0
		crashtest.Run(t, []string{childEnv + "=" + e.dir,
			"ZEST_S3_ENDPOINT=" + e.srv.Endpoint, "ZEST_S3_ACCESS_KEY=" + e.srv.AccessKey,
			"ZEST_S3_SECRET_KEY=" + e.srv.SecretKey, "ZEST_S3_SECURE=false"}, func(line string) bool {
			if !strings.HasPrefix(line, "applied ") {
				return false
			}
			applied++
			return applied == killAfter
		})
		t.Logf("round %d: killed after %d applies (%d seen)", round, killAfter, applied)
	}
	e.open(t)
	m, stop := e.run(t, nil)
	drain(t, m)
	require.NoError(t, stop())

	v := versions(t, e.sink.Client(), "crash")
	for i := range distinct {
		assert.Equal(t, []string{"once"}, v[fmt.Sprintf("d%03d", i)], "d%03d", i)
	}
	for h := range hot {
		got := v[fmt.Sprintf("hot%d", h)]
		require.NotEmpty(t, got)
		last := -1
		for _, s := range got {
			n, _ := strconv.Atoi(s)
			assert.Greater(t, n, last, "hot%d: versions %v", h, got)
			last = n
		}
		assert.Equal(t, updates-1, last, "hot%d ends at the last committed value", h)
	}
	dead, _ := e.q.DeadLetters(context.Background(), 0, 10)
	assert.Empty(t, dead)
}
