package effectqueue_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/stm"
)

const crashChildEnv = "ZEST_EFFECTQUEUE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild reopens the queue in dir, prints what it holds, then, until
// it is killed, commits transactions of 1 to 3 entries from 3 goroutines
// and acks what it reads from a fourth, out of order, in one to three Acks.
// It prints:
//
//	have <seq> <payload>       each pending entry found after Open
//	ready <head> <depth> <age> then the backlog; nothing changed before
//	commit <tx> <n>            after Run returned nil for tx's n entries
//	acking <seq> <payload>     before an Ack of seq
//	acked <seq>                after that Ack returned nil
//
// A failed Open prints "error ...", which fails the test.
func crashChild(dir string) {
	db, err := stm.Open(nil)
	if err != nil {
		panic(err)
	}
	// A small memtable: a child lives for a moment, and opening costs less.
	// Warnings go to stdout, for the parent to count the recoveries.
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, MemTableSize: 2 << 20, MaxEntrySize: 64 << 10, Logger: log})
	if err != nil {
		fmt.Println("error reopen:", err)
		os.Exit(1)
	}
	var out sync.Mutex
	say := func(format string, a ...any) {
		out.Lock()
		fmt.Printf(format+"\n", a...)
		out.Unlock()
	}
	fail := func(what string, err error) {
		say("error %s: %v", what, err)
		os.Exit(1)
	}
	ctx := context.Background()
	// What survived the last kill, for the parent to check.
	items, err := q.Read(ctx, 0, 1<<30)
	if err != nil {
		fail("read", err)
	}
	for _, it := range items {
		say("have %d %s", it.Seq, it.Payload)
	}
	say("ready %d %d %d", q.Head(), q.Depth(), q.OldestAge())
	var ids atomic.Uint64
	base := uint64(os.Getpid()) << 32
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for {
				tx := base | ids.Add(1)
				n := int(tx%3) + 1
				err := db.Run(ctx, func(t *stm.Tx) error {
					for i := range n {
						p := fmt.Sprintf("%d:%d:%d", tx, i, n)
						if err := q.Enqueue(t, effectqueue.Entry{Kind: "k", Key: "crash", Payload: []byte(p)}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					fail("commit", err)
				}
				say("commit %d %d", tx, n)
			}
		})
	}
	wg.Go(func() {
		r := rand.New(rand.NewPCG(uint64(os.Getpid()), 0))
		var last uint64
		for {
			items, err := q.Read(ctx, 0, 64)
			if err != nil {
				fail("read", err)
			}
			r.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
			// In one to three Acks, so that the backlog stays short.
			per := max(1, len(items)/(1+r.IntN(3)))
			for len(items) > 0 {
				n := min(len(items), per)
				var seqs []uint64
				for _, it := range items[:n] {
					say("acking %d %s", it.Seq, it.Payload)
					seqs = append(seqs, it.Seq)
					last = max(last, it.Seq)
				}
				items = items[n:]
				if err := q.Ack(ctx, seqs...); err != nil {
					fail("ack", err)
				}
				for _, s := range seqs {
					say("acked %d", s)
				}
			}
			if err := q.Wait(ctx, last); err != nil {
				fail("wait", err)
			}
		}
	})
	wg.Wait()
}

// crashModel is what the parent knows of the child's work, from its lines.
type crashModel struct {
	committed map[uint64]int    // tx -> entries, Run returned nil
	live      map[string]bool   // payloads of committed entries no Ack was started for
	acking    map[uint64]string // seq -> payload: an Ack was started
	acked     map[uint64]bool   // seq: the Ack returned nil
	seqOf     map[string]uint64 // payload -> seq, once seen
	head      uint64            // the highest head seen
	goneBelow uint64            // every sequence number below it was acked

	have      []effectqueue.Item // the child's "have" lines so far
	round     int
	checked   int // states checked
	recovered int // empty Badger files removed at a reopen
}

func (m *crashModel) line(t *testing.T, line string) {
	if strings.Contains(line, "removed an empty Badger file") {
		m.recovered++
	}
	f := strings.Fields(line)
	switch {
	case len(f) == 3 && f[0] == "commit":
		tx, _ := strconv.ParseUint(f[1], 10, 64)
		n, _ := strconv.Atoi(f[2])
		m.committed[tx] = n
		for i := range n {
			p := fmt.Sprintf("%d:%d:%d", tx, i, n)
			if s, ok := m.seqOf[p]; ok {
				if _, gone := m.acking[s]; gone {
					continue
				}
			}
			m.live[p] = true
		}
	case len(f) == 3 && f[0] == "acking":
		seq, _ := strconv.ParseUint(f[1], 10, 64)
		m.acking[seq] = f[2]
		m.see(t, f[2], seq)
		delete(m.live, f[2])
	case len(f) == 3 && f[0] == "have":
		seq, _ := strconv.ParseUint(f[1], 10, 64)
		m.have = append(m.have, effectqueue.Item{Seq: seq, Entry: effectqueue.Entry{Payload: []byte(f[2])}})
	case len(f) == 4 && f[0] == "ready":
		head, _ := strconv.ParseUint(f[1], 10, 64)
		depth, _ := strconv.ParseInt(f[2], 10, 64)
		age, _ := strconv.ParseInt(f[3], 10, 64)
		m.check(t, m.round, m.have, head, depth, time.Duration(age))
		m.have = m.have[:0]
		m.checked++
	case len(f) == 2 && f[0] == "acked":
		seq, _ := strconv.ParseUint(f[1], 10, 64)
		m.acked[seq] = true
	}
}

// see records that payload has sequence number seq: it must never change,
// and no two payloads share a number.
func (m *crashModel) see(t *testing.T, payload string, seq uint64) {
	if s, ok := m.seqOf[payload]; ok {
		require.Equal(t, s, seq, "entry %s changed its sequence number", payload)
		return
	}
	m.seqOf[payload] = seq
	m.head = max(m.head, seq)
}

// TestCrashLoop kills a process that commits and acks with SIGKILL, 100
// times (ZEST_STRESS=1: 1000; ZEST_CRASH_KILLS=n: n), at random moments:
// after a random number of printed events, or at a random time after its
// start (while it opens Badger, sometimes). Two loops run side by side, on
// two directories, half of the kills each. Each child reopens the queue and
// prints what it found; the parent checks that state (and, at the end,
// reopens the queue itself):
//   - every reopen succeeds;
//   - every entry of a transaction whose Run returned nil is there, unless
//     an Ack of it was started: no acknowledged commit is lost;
//   - no entry whose Ack returned nil is there: nothing acked comes back;
//   - a transaction's entries are all there (or being acked) or none, with
//     consecutive sequence numbers, in order;
//   - every sequence number from 1 to the head is there or was acked: no
//     gap, no reuse; an entry keeps its number; the head never goes back;
//   - Depth and OldestAge describe what is there.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: spawns and kills 100 processes")
	}
	kills := 100
	if os.Getenv("ZEST_STRESS") != "" {
		kills = 1000
	}
	if n, err := strconv.Atoi(os.Getenv("ZEST_CRASH_KILLS")); err == nil {
		kills = n
	}
	seed := rand.Uint64()
	t.Logf("seed %d, %d kills", seed, kills)
	for loop := range 2 {
		t.Run(fmt.Sprint("loop", loop), func(t *testing.T) {
			t.Parallel()
			crashLoop(t, rand.New(rand.NewPCG(seed, uint64(loop))), (kills+1-loop)/2)
		})
	}
}

func crashLoop(t *testing.T, r *rand.Rand, kills int) {
	dir := t.TempDir()
	m := &crashModel{committed: map[uint64]int{}, live: map[string]bool{}, acking: map[uint64]string{}, acked: map[uint64]bool{}, seqOf: map[string]uint64{}}
	var timed, mid, beforeReady int
	start := time.Now()
	for round := range kills {
		m.round = round
		o := crashtest.Options{Env: []string{crashChildEnv + "=" + dir}, Stuck: 30 * time.Second}
		killAfter := 0
		if r.IntN(4) == 0 {
			// At a moment no line marks: from right after the start on,
			// so that some kills land while the child opens Badger.
			o.KillAfter = time.Duration(1+r.IntN(600)) * time.Millisecond
			timed++
		} else {
			killAfter = 1 + r.IntN(20)
			mid++
		}
		events, ready := 0, false
		res := crashtest.RunWith(t, o, func(line string) bool {
			m.line(t, line)
			switch {
			case strings.HasPrefix(line, "ready"):
				ready = true
			case ready && !strings.HasPrefix(line, "acking"):
				events++ // a commit or an ack that returned
			}
			return killAfter > 0 && events >= killAfter
		})
		if !ready {
			beforeReady++
		}
		m.have = m.have[:0] // a dump cut short by the kill
		require.True(t, res.Killed, "round %d: the child exited on its own after %d lines", round, res.Lines)
	}
	m.round = kills
	db, err := stm.Open(nil)
	require.NoError(t, err)
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, MemTableSize: 2 << 20, MaxEntrySize: 64 << 10, Logger: quiet})
	require.NoError(t, err, "the last reopen failed")
	items := readAll(t, q)
	m.check(t, kills, items, q.Head(), q.Depth(), q.OldestAge())
	m.checked++
	require.NoError(t, q.Close())
	t.Logf("%d kills (%d at a random time, %d of them before the child was ready; %d after a random event), %d reopens checked, 0 failed, %d empty Badger files removed; %d transactions committed, %d acks started, %d returned; head %d; %v",
		kills, timed, beforeReady, mid, m.checked, m.recovered, len(m.committed), len(m.acking), len(m.acked), m.head, time.Since(start).Round(time.Millisecond))
}

func (m *crashModel) check(t *testing.T, round int, items []effectqueue.Item, head uint64, depth int64, age time.Duration) {
	require.GreaterOrEqual(t, head, m.head, "round %d: the head went back", round)
	present := map[uint64]string{}
	byTx := map[uint64][]effectqueue.Item{}
	for i, it := range items {
		if i > 0 {
			require.Greater(t, it.Seq, items[i-1].Seq, "round %d: read out of order", round)
		}
		require.LessOrEqual(t, it.Seq, head, "round %d: entry beyond the head", round)
		require.False(t, m.acked[it.Seq], "round %d: entry %d (%s) was acked and came back", round, it.Seq, it.Payload)
		present[it.Seq] = string(it.Payload)
		m.see(t, string(it.Payload), it.Seq)
		var tx uint64
		var idx, n int
		_, err := fmt.Sscanf(string(it.Payload), "%d:%d:%d", &tx, &idx, &n)
		require.NoError(t, err)
		byTx[tx] = append(byTx[tx], it)
	}
	m.head = max(m.head, head)
	for m.goneBelow == 0 || m.acking[m.goneBelow] != "" {
		m.goneBelow++
	}
	for s := m.goneBelow; s <= head; s++ {
		_, here := present[s]
		_, gone := m.acking[s]
		require.True(t, here || gone, "round %d: sequence number %d is neither there nor acked (head %d)", round, s, head)
	}
	// Nothing acknowledged lost: every committed entry that no Ack was
	// started for is there.
	for p := range m.live {
		seq, known := m.seqOf[p]
		require.True(t, known && present[seq] == p, "round %d: entry %s of an acknowledged transaction lost", round, p)
	}
	for tx, its := range byTx {
		n := int(tx%3) + 1
		for i := range n {
			p := fmt.Sprintf("%d:%d:%d", tx, i, n)
			seq, known := m.seqOf[p]
			require.True(t, known, "round %d: transaction %d is partly written: %s missing", round, tx, p)
			if i > 0 {
				require.Equal(t, m.seqOf[fmt.Sprintf("%d:%d:%d", tx, i-1, n)]+1, seq, "round %d: transaction %d's entries not consecutive", round, tx)
			}
		}
		_ = its
	}
	require.Equal(t, int64(len(items)), depth, "round %d: Depth", round)
	if len(items) > 0 {
		require.Positive(t, age, "round %d: OldestAge 0 with %d pending", round, len(items))
	} else {
		require.Zero(t, age)
	}
}
