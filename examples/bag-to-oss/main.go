// Command bag-to-oss is Zest's reference example: players remove items from
// their bags in transactions, and each committed removal puts a receipt
// object (and the player's latest bag snapshot) to an S3-compatible store.
//
// A transaction removes every requested item or none: if one is missing it
// rolls back, and nothing reaches the store. Many goroutines work on the same
// players, so transactions conflict and rerun; reruns enqueue nothing extra.
// At the end the program lists the bucket and checks that the receipts are
// exactly those of the committed transactions, each once, and that each
// player's snapshot equals the final table state.
//
// The store comes from flags or the environment (ZEST_S3_ENDPOINT,
// ZEST_S3_ACCESS_KEY, ZEST_S3_SECRET_KEY, ZEST_S3_SECURE); `make demo` starts
// a local MinIO and sets them.
//
// While it runs, the admin page (package admin) and the Prometheus metrics
// (package metrics) are served on -admin (default 127.0.0.1:8080, or a free
// port if that one is taken), and their URLs printed; -hold keeps serving
// them after the run, to look around.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zest-stm/zest/admin"
	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/metrics"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/s3sink"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// Bag maps item names to counts. It holds a map, so it implements Clone:
// values read from a table are private copies.
type Bag map[string]int

// Clone returns a copy of b.
func (b Bag) Clone() Bag { return maps.Clone(b) }

// Receipt is the object written for each committed removal.
type Receipt struct {
	Tx      string         `json:"tx"`
	Player  string         `json:"player"`
	Removed map[string]int `json:"removed"`
	After   Bag            `json:"bag_after"`
}

// Config is what one run does.
type Config struct {
	S3        s3sink.Options
	Bucket    string
	Players   int
	Workers   int
	Removals  int // transactions attempted in all
	QueueDir  string
	Logger    *slog.Logger
	Out       io.Writer
	Seed      uint64
	MoverOpts mover.Options
	// AdminAddr, when set, is where the admin page and the metrics are
	// served during the run ("127.0.0.1:0" for a free port). If the port is
	// taken, a free one is used instead.
	AdminAddr string
	// Hold keeps serving them this long after the run (until ctx ends).
	Hold time.Duration
}

// Report is what a run did.
type Report struct {
	Committed, RolledBack, Reruns uint64
	ObjectsWritten                uint64
	Receipts                      int
	Elapsed                       time.Duration
}

var items = []string{"potion", "sword", "shield", "arrow", "gem", "scroll"}

var errMissing = errors.New("item missing from bag")

func main() {
	var c Config
	flag.StringVar(&c.S3.Endpoint, "endpoint", "", "S3 endpoint host:port (default $ZEST_S3_ENDPOINT)")
	flag.StringVar(&c.S3.AccessKey, "access-key", "", "access key (default $ZEST_S3_ACCESS_KEY)")
	flag.StringVar(&c.S3.SecretKey, "secret-key", "", "secret key (default $ZEST_S3_SECRET_KEY)")
	flag.BoolVar(&c.S3.Secure, "secure", false, "use HTTPS (default $ZEST_S3_SECURE when the endpoint comes from the environment)")
	flag.StringVar(&c.S3.Region, "region", "", "bucket region")
	flag.StringVar(&c.Bucket, "bucket", "zest-demo", "bucket (created if missing)")
	flag.IntVar(&c.Players, "players", 20, "players")
	flag.IntVar(&c.Workers, "workers", 32, "goroutines running transactions")
	flag.IntVar(&c.Removals, "tx", 2000, "removal transactions to attempt")
	flag.StringVar(&c.QueueDir, "queue-dir", "", "effect queue directory (default: a temporary one)")
	flag.StringVar(&c.AdminAddr, "admin", "127.0.0.1:8080", "address of the admin page and /metrics during the run (\"\" for none)")
	flag.DurationVar(&c.Hold, "hold", 0, "keep serving the admin page this long after the run (Ctrl-C ends it)")
	flag.Parse()
	c.S3.CreateBuckets = true
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	c.Out = os.Stdout
	c.Seed = rand.Uint64()
	if c.QueueDir == "" {
		d, err := os.MkdirTemp("", "zest-bag-to-oss-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.RemoveAll(d)
		c.QueueDir = d
	}
	sig, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(sig, 10*time.Minute+c.Hold)
	defer cancel()
	if _, err := Run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "bag-to-oss:", err)
		os.Exit(1)
	}
}

// Run runs the example and checks the bucket against the committed
// transactions.
func Run(ctx context.Context, c Config) (Report, error) {
	start := time.Now()
	var rep Report
	sink, err := s3sink.New(&c.S3)
	if err != nil {
		return rep, err
	}
	if err := sink.Check(ctx, c.Bucket); err != nil {
		return rep, err
	}
	db, err := stm.Open(&stm.Options{Logger: c.Logger})
	if err != nil {
		return rep, err
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: c.QueueDir, Logger: c.Logger})
	if err != nil {
		return rep, err
	}
	defer q.Close()
	bags, err := table.New[string, Bag](db, "bags")
	if err != nil {
		return rep, err
	}
	run := fmt.Sprintf("run-%x", c.Seed&0xffffffff)
	prefix := run + "/"

	// Fill the bags (the snapshot objects come with the first removals).
	r := rand.New(rand.NewPCG(c.Seed, 1))
	players := make([]string, c.Players)
	err = db.Run(ctx, func(tx *stm.Tx) error {
		for i := range players {
			players[i] = fmt.Sprintf("player%03d", i)
			b := Bag{}
			for _, it := range items {
				b[it] = 5 + r.IntN(20)
			}
			bags.Put(tx, players[i], b)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}

	mo := c.MoverOpts
	mo.Logger = c.Logger
	mv, err := mover.New(q, map[string]mover.Sink{"s3": sink}, &mo)
	if err != nil {
		return rep, err
	}
	moverDone := make(chan error, 1)
	go func() { moverDone <- mv.Run(ctx) }()

	if c.AdminAddr != "" {
		stop, err := serveAdmin(c, db, q, mv)
		if err != nil {
			return rep, err
		}
		defer stop()
	}

	var mu sync.Mutex
	committed := map[string]bool{}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed error
	var failOnce sync.Once
	for w := range c.Workers {
		wg.Go(func() {
			wr := rand.New(rand.NewPCG(c.Seed, uint64(w)+2))
			for next.Add(1) <= int64(c.Removals) {
				player := players[wr.IntN(len(players))]
				want := map[string]int{}
				for range 1 + wr.IntN(2) {
					want[items[wr.IntN(len(items))]] += 1 + wr.IntN(2)
				}
				txID := fmt.Sprintf("tx-%d-%d", w, next.Load())
				err := db.Run(ctx, func(tx *stm.Tx) error {
					bag, _ := bags.Get(tx, player)
					for it, n := range want {
						if bag[it] < n {
							return errMissing // roll back: nothing removed, nothing put
						}
						bag[it] -= n
					}
					bags.Put(tx, player, bag)
					receipt, _ := json.Marshal(Receipt{Tx: txID, Player: player, Removed: want, After: bag})
					snapshot, _ := json.Marshal(bag)
					if err := q.Enqueue(tx, s3sink.Put(c.Bucket, prefix+"receipts/"+txID+".json", receipt, "application/json", nil)); err != nil {
						return err
					}
					return q.Enqueue(tx, s3sink.Put(c.Bucket, prefix+"bags/"+player+".json", snapshot, "application/json", nil))
				})
				switch {
				case err == nil:
					mu.Lock()
					committed[txID] = true
					mu.Unlock()
				case errors.Is(err, errMissing):
					atomic.AddUint64(&rep.RolledBack, 1)
				default:
					failOnce.Do(func() { failed = err })
				}
			}
		})
	}
	wg.Wait()
	rep.Committed = uint64(len(committed))
	if failed != nil {
		return rep, failed
	}
	if err := mv.WaitDrained(ctx); err != nil {
		return rep, fmt.Errorf("waiting for the mover: %w", err)
	}
	if err := mv.Shutdown(ctx); err != nil {
		return rep, err
	}
	if err := <-moverDone; err != nil {
		return rep, err
	}
	st := mv.Stats()
	rep.ObjectsWritten = st.Delivered
	rep.Reruns = db.Stats().Reruns
	if st.DeadLettered > 0 {
		return rep, fmt.Errorf("%d entries were dead-lettered", st.DeadLettered)
	}

	// Check the bucket against what committed.
	final := map[string]Bag{}
	err = db.Run(ctx, func(tx *stm.Tx) error {
		bags.Scan(tx, func(p string, b Bag) bool { final[p] = b; return true })
		return nil
	})
	if err != nil {
		return rep, err
	}
	if err := verify(ctx, sink.Client(), c.Bucket, prefix, committed, final); err != nil {
		return rep, err
	}
	rep.Receipts = len(committed)
	rep.Elapsed = time.Since(start)
	if c.Out != nil {
		fmt.Fprintf(c.Out, "bag-to-oss: %d transactions committed, %d rolled back (item missing), %d reruns\n",
			rep.Committed, rep.RolledBack, rep.Reruns)
		fmt.Fprintf(c.Out, "bag-to-oss: %d objects written to s3://%s/%s, in %v\n",
			rep.ObjectsWritten, c.Bucket, prefix, rep.Elapsed.Round(time.Millisecond))
		fmt.Fprintf(c.Out, "bag-to-oss: checked: %d receipts, exactly the committed transactions, each once; %d bag snapshots equal the final table\n",
			rep.Receipts, len(final))
	}
	if c.AdminAddr != "" && c.Hold > 0 {
		if c.Out != nil {
			fmt.Fprintf(c.Out, "bag-to-oss: the admin page stays up for %v; Ctrl-C ends it\n", c.Hold)
		}
		t := time.NewTimer(c.Hold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return rep, nil
}

// serveAdmin serves the admin page (read-write: it is on loopback) and the
// Prometheus metrics of this run on c.AdminAddr, prints their URLs, and
// returns the function that stops the server.
func serveAdmin(c Config, db *stm.DB, q *effectqueue.Queue, mv *mover.Mover) (func(), error) {
	col, err := metrics.NewCollector(&metrics.Options{
		DB:     db,
		Queues: map[string]*effectqueue.Queue{"main": q},
		Movers: map[string]metrics.Mover{"main": mv},
		Logger: c.Logger,
	})
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(col); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", admin.Handler(&admin.Options{
		RootPath: "/admin",
		DB:       db,
		Queues:   map[string]*effectqueue.Queue{"main": q},
		Movers:   map[string]*mover.Mover{"main": mv},
		Logger:   c.Logger,
	}))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", c.AdminAddr)
	if err != nil {
		// The usual port is taken (another demo?): any free one will do.
		host, _, _ := net.SplitHostPort(c.AdminAddr)
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			return nil, fmt.Errorf("admin listener: %w", err)
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	if c.Out != nil {
		base := "http://" + ln.Addr().String()
		fmt.Fprintf(c.Out, "bag-to-oss: admin page  %s/admin/   (zest --url %s/admin queue)\n", base, base)
		fmt.Fprintf(c.Out, "bag-to-oss: metrics     %s/metrics\n", base)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// verify lists the run's objects and compares them with the committed
// transactions and the final bags.
func verify(ctx context.Context, c *minio.Client, bucket, prefix string, committed map[string]bool, final map[string]Bag) error {
	seen := map[string]int{}
	var problems []string
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix + "receipts/", Recursive: true}) {
		if o.Err != nil {
			return o.Err
		}
		id := strings.TrimSuffix(strings.TrimPrefix(o.Key, prefix+"receipts/"), ".json")
		seen[id]++
		if !committed[id] {
			problems = append(problems, "receipt of a transaction that did not commit: "+id)
		}
	}
	for id := range committed {
		if seen[id] != 1 {
			problems = append(problems, fmt.Sprintf("transaction %s has %d receipts", id, seen[id]))
		}
	}
	for p, want := range final {
		obj, err := c.GetObject(ctx, bucket, prefix+"bags/"+p+".json", minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		var got Bag
		err = json.NewDecoder(obj).Decode(&got)
		obj.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			// A player whose every removal rolled back has no snapshot.
			continue
		}
		if err != nil {
			return fmt.Errorf("snapshot of %s: %w", p, err)
		}
		if !maps.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("snapshot of %s is %v, the table holds %v", p, got, want))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
		}
		return fmt.Errorf("bucket does not match the committed transactions:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}
