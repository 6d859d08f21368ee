package stress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/crashtest"
	"github.com/zest-stm/zest/internal/miniotest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/s3sink"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

const (
	childEnv    = "ZEST_STRESS_CHILD"
	childBucket = "stress"
	players     = 10
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Bag is a player's bag: item -> count.
type Bag map[string]int

// Clone returns a copy of b.
func (b Bag) Clone() Bag { return maps.Clone(b) }

var items = []string{"potion", "sword", "gem", "arrow"}

var errMissing = errors.New("item missing")

// app is the game server of the end-to-end scenario: durable bags, a
// durable record of committed receipts, the queue and the mover.
type app struct {
	db       *stm.DB
	q        *effectqueue.Queue
	bags     *table.Table[string, Bag]
	receipts *table.Table[string, string] // tx id -> player, written with the receipt's entry
	sink     *s3sink.Sink
	mover    *mover.Mover
}

func openApp(dir string, s3 *s3sink.Options) (*app, error) {
	a := &app{}
	var err error
	if a.db, err = stm.Open(&stm.Options{Logger: quiet}); err != nil {
		return nil, err
	}
	if a.q, err = effectqueue.Open(a.db, &effectqueue.Options{Dir: dir, Logger: quiet}); err != nil {
		return nil, err
	}
	if a.bags, err = table.NewDurable[string, Bag](a.db, "bags", nil); err != nil {
		return nil, err
	}
	if a.receipts, err = table.NewDurable[string, string](a.db, "receipts", nil); err != nil {
		return nil, err
	}
	if a.sink, err = s3sink.New(s3); err != nil {
		return nil, err
	}
	a.mover, err = mover.New(a.q, map[string]mover.Sink{"s3": a.sink},
		&mover.Options{Concurrency: 8, BaseBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, MaxAttempts: 100_000, Logger: quiet})
	return a, err
}

func (a *app) close() {
	a.q.Close()
	a.sink.Close()
}

// removal takes items from a player's bag, or refills it when it runs low;
// a removal records its receipt and puts it, and the bag's snapshot, to S3.
func (a *app) removal(ctx context.Context, r *rand.Rand, id string) (committed bool, err error) {
	player := fmt.Sprintf("p%02d", r.IntN(players))
	want := map[string]int{items[r.IntN(len(items))]: 1 + r.IntN(3)}
	refill := r.IntN(6) == 0
	err = a.db.Run(ctx, func(tx *stm.Tx) error {
		bag, _ := a.bags.Get(tx, player)
		if bag == nil {
			bag = Bag{}
		}
		if refill {
			for _, it := range items {
				bag[it] += 5
			}
		} else {
			for it, n := range want {
				if bag[it] < n {
					return errMissing
				}
				bag[it] -= n
			}
		}
		a.bags.Put(tx, player, bag)
		snap, _ := json.Marshal(bag)
		if err := a.q.Enqueue(tx, s3sink.Put(childBucket, "bags/"+player+".json", snap, "application/json", nil)); err != nil {
			return err
		}
		if refill {
			return nil
		}
		a.receipts.Put(tx, id, player)
		body, _ := json.Marshal(map[string]any{"tx": id, "player": player, "removed": want})
		return a.q.Enqueue(tx, s3sink.Put(childBucket, "receipts/"+id+".json", body, "application/json", nil))
	})
	return err == nil && !refill, err
}

// runChild is the app process: it commits removals from 6 goroutines and
// runs the mover, printing "ack <id>" after each committed removal, until
// it is killed.
func runChild(dir string) {
	if d, ok := strings.CutPrefix(dir, natsChildPrefix); ok {
		runNatsChild(d)
		return
	}
	a, err := openApp(dir, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() { _ = a.mover.Run(context.Background()) }()
	seed, _ := strconv.ParseUint(os.Getenv("ZEST_STRESS_SEED"), 10, 64)
	fmt.Println("ready")
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(os.Getpid())<<8|uint64(g)))
			for n := 0; ; n++ {
				id := fmt.Sprintf("%d-%d-%d", os.Getpid(), g, n)
				ok, err := a.removal(context.Background(), r, id)
				if err != nil && !errors.Is(err, errMissing) {
					fmt.Println("error", err)
					os.Exit(1)
				}
				if ok {
					mu.Lock()
					fmt.Println("ack", id)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// TestBagToOSSWithFaults runs the bag-to-OSS game server in a subprocess,
// kills it with SIGKILL and restarts it at random moments, and kills and
// restarts MinIO at random moments. At the end (after a final drain) it
// checks:
//   - every removal acknowledged to a client is recorded (durability);
//   - the bucket holds exactly one object, with exactly one version, per
//     committed receipt, and no receipt of a rolled-back or rerun attempt;
//   - each player's snapshot object equals the final table state;
//   - nothing was dead-lettered.
func TestBagToOSSWithFaults(t *testing.T) {
	s := newScenario(t, "bag-to-oss faults")
	srv := miniotest.Start(t)
	dir := t.TempDir()
	s3opts := &s3sink.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	admin, err := s3sink.New(s3opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := admin.Client()
	if err := c.MakeBucket(ctx, childBucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.EnableVersioning(ctx, childBucket); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(s.seed, 0))
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
		crashtest.Run(t, []string{childEnv + "=" + dir, "ZEST_STRESS_SEED=" + strconv.FormatUint(s.seed+uint64(round), 10),
			"ZEST_S3_ENDPOINT=" + srv.Endpoint, "ZEST_S3_ACCESS_KEY=" + srv.AccessKey,
			"ZEST_S3_SECRET_KEY=" + srv.SecretKey, "ZEST_S3_SECURE=false"}, func(line string) bool {
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
				s.logf("round %d: MinIO stopped after %d acks", round, seen)
			case outageEnd:
				if err := srv.Restart(); err != nil {
					t.Fatal(err)
				}
				s.logf("round %d: MinIO restarted after %d acks", round, seen)
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
	a, err := openApp(dir, s3opts)
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- a.mover.Run(ctx) }()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	if err := a.mover.WaitDrained(dctx); err != nil {
		s.violation("final drain: %v (mover %+v)", err, a.mover.Stats())
	}
	cancel()
	_ = a.mover.Shutdown(ctx)
	<-runDone
	s.checkBucket(a, c, acked)
	dead, _ := a.q.DeadLetters(ctx, 0, 100)
	for _, d := range dead {
		s.violation("dead letter %d %s: %s", d.Seq, d.Key, d.Reason)
	}
	committed := 0
	_ = a.db.Run(ctx, func(tx *stm.Tx) error { committed = a.receipts.Len(tx); return nil })
	a.close()
	admin.Close()
	srv.Stop()
	s.row.Transactions = uint64(committed)
	s.row.Faults = kills + outages
	s.row.Deliveries = a.mover.Stats().Delivered
	s.row.Note = fmt.Sprintf("%d app kills, %d MinIO outages, %d acked removals; reruns and rollbacks happen in the app process and are not counted; deliveries: the final drain's",
		kills, outages, len(acked))
	s.finish()
}

func (s *scenario) checkBucket(a *app, c *minio.Client, acked map[string]bool) {
	ctx := context.Background()
	committed := map[string]string{}
	bags := map[string]Bag{}
	_ = a.db.Run(ctx, func(tx *stm.Tx) error {
		clear(committed)
		clear(bags)
		a.receipts.Scan(tx, func(id, p string) bool { committed[id] = p; return true })
		a.bags.Scan(tx, func(p string, b Bag) bool { bags[p] = b; return true })
		return nil
	})
	for id := range acked {
		if _, ok := committed[id]; !ok {
			s.violation("acknowledged removal %s is not recorded after the restarts", id)
		}
	}
	versions := map[string]int{}
	for o := range c.ListObjects(ctx, childBucket, minio.ListObjectsOptions{Prefix: "receipts/", Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			s.violation("list: %v", o.Err)
			return
		}
		versions[strings.TrimSuffix(strings.TrimPrefix(o.Key, "receipts/"), ".json")]++
	}
	for id, n := range versions {
		if _, ok := committed[id]; !ok {
			s.violation("receipt %s in the bucket, but its transaction did not commit", id)
		} else if n != 1 {
			s.violation("receipt %s has %d versions, want 1", id, n)
		}
	}
	for id := range committed {
		if versions[id] == 0 {
			s.violation("committed receipt %s is missing from the bucket", id)
		}
	}
	for p, want := range bags {
		obj, err := c.GetObject(ctx, childBucket, "bags/"+p+".json", minio.GetObjectOptions{})
		if err != nil {
			s.violation("snapshot of %s: %v", p, err)
			continue
		}
		var got Bag
		err = json.NewDecoder(obj).Decode(&got)
		obj.Close()
		if err != nil {
			s.violation("snapshot of %s: %v", p, err)
		} else if !maps.Equal(got, want) {
			s.violation("snapshot of %s is %v, the table holds %v", p, got, want)
		}
	}
	s.row.Entries = a.q.Head()
	s.logf("%d committed receipts, %d objects", len(committed), len(versions))
}
