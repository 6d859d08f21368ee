// Command purchase-nats is a game shop that publishes each purchase to NATS
// JetStream through Zest's queue: the transactional-outbox pattern.
//
// Players buy items concurrently. A purchase debits the player's coins and,
// in the same transaction, enqueues a message for subject
// PURCHASES.<player>. A purchase the player cannot afford rolls back and
// publishes nothing; a transaction that reruns publishes nothing extra. The
// mover publishes the committed purchases, in commit order per player.
//
// Without ZEST_NATS_URL (or -url), the program starts a NATS server with
// JetStream inside itself, on 127.0.0.1, with a temporary store, and, with
// -restart (the default), shuts it down and restarts it while purchases are
// being published. At the end it reads the stream back and checks that
// every committed purchase is there exactly once, in per-player commit
// order, and no rolled-back one is. It exits 1 if not.
//
//	go run ./examples/purchase-nats            # embedded server
//	ZEST_NATS_URL=nats://host:4222 go run ./examples/purchase-nats -stream PURCHASES
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/natstest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/natssink"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// Wallet is a player's coins.
type Wallet struct{ Coins int64 }

// Purchase is the message published for each committed purchase.
type Purchase struct {
	Player string `json:"player"`
	Item   string `json:"item"`
	Price  int64  `json:"price"`
	// N numbers the player's committed purchases from 1, in commit order.
	N int64 `json:"n"`
}

// Config configures a run.
type Config struct {
	URL       string // empty: start an embedded server
	Stream    string
	Players   int
	Buyers    int // concurrent goroutines
	Purchases int // attempts in all
	Coins     int64
	Restart   bool // restart the embedded server mid-run
	Dir       string
	Seed      uint64
	Logger    *slog.Logger
}

// Report is what a run did and found.
type Report struct {
	Committed, RolledBack int64
	Published             int // messages of this run found in the stream
	Reruns                uint64
	ServerRestarts        int
	MoverRetries          uint64
	Elapsed               time.Duration
}

var errBroke = errors.New("not enough coins")

// Run runs the shop and checks the stream.
func Run(ctx context.Context, c Config) (Report, error) {
	var rep Report
	began := time.Now()
	var srv *natstest.Server
	if c.URL == "" {
		var err error
		if srv, err = natstest.New(c.Dir+"/nats", nil); err != nil {
			return rep, err
		}
		defer srv.Stop()
		c.URL = srv.URL
	}
	sink, err := natssink.New(&natssink.Options{URL: c.URL, Stream: c.Stream, CreateStream: true})
	if err != nil {
		return rep, err
	}
	defer sink.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = sink.Check(cctx)
	cancel()
	if err != nil {
		return rep, err
	}

	db, err := stm.Open(nil)
	if err != nil {
		return rep, err
	}
	q, err := effectqueue.Open(db, &effectqueue.Options{Dir: c.Dir + "/queue", Logger: c.Logger})
	if err != nil {
		return rep, err
	}
	defer q.Close()
	wallets, err := table.New[string, Wallet](db, "wallets")
	if err != nil {
		return rep, err
	}
	counts, err := table.New[string, int64](db, "purchase-counts")
	if err != nil {
		return rep, err
	}
	players := make([]string, c.Players)
	err = db.Run(ctx, func(tx *stm.Tx) error {
		for i := range players {
			players[i] = fmt.Sprintf("p%02d", i)
			wallets.Put(tx, players[i], Wallet{Coins: c.Coins})
		}
		return nil
	})
	if err != nil {
		return rep, err
	}

	m, err := mover.New(q, map[string]mover.Sink{"nats": sink},
		&mover.Options{BaseBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxAttempts: 1000, Logger: c.Logger})
	if err != nil {
		return rep, err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()

	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range c.Purchases {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var buyErr error
	for w := range c.Buyers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(c.Seed, uint64(w)))
			for range next {
				player := players[rng.IntN(len(players))]
				price := int64(1 + rng.IntN(20))
				item := []string{"sword", "potion", "shield", "gem"}[rng.IntN(4)]
				err := db.Run(ctx, func(tx *stm.Tx) error {
					w, _ := wallets.Get(tx, player)
					if w.Coins < price {
						return errBroke // rolls back: nothing is published
					}
					w.Coins -= price
					wallets.Put(tx, player, w)
					n, _ := counts.Get(tx, player)
					counts.Put(tx, player, n+1)
					body, err := json.Marshal(Purchase{Player: player, Item: item, Price: price, N: n + 1})
					if err != nil {
						return err
					}
					return q.Enqueue(tx, natssink.Publish(c.Stream+"."+player, body, map[string]string{"Content-Type": "application/json"}))
				})
				mu.Lock()
				switch {
				case err == nil:
					rep.Committed++
				case errors.Is(err, errBroke):
					rep.RolledBack++
				case buyErr == nil:
					buyErr = err
				}
				mu.Unlock()
			}
		})
	}

	if srv != nil && c.Restart {
		// Take the server away while the mover publishes, and bring it back
		// once the mover has failed a few times.
		if err := waitUntil(ctx, func() bool { return m.Stats().Delivered >= uint64(c.Purchases/8) }); err == nil {
			srv.Stop()
			before := m.Stats().Retries
			_ = waitUntil(ctx, func() bool { return m.Stats().Retries >= before+3 || q.Depth() == 0 })
			if err := srv.Restart(); err != nil {
				return rep, err
			}
			rep.ServerRestarts++
		}
	}
	wg.Wait()
	if buyErr != nil {
		return rep, buyErr
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := m.WaitDrained(dctx); err != nil {
		return rep, fmt.Errorf("drain: %w (mover %+v)", err, m.Stats())
	}
	if err := m.Shutdown(dctx); err != nil {
		return rep, err
	}
	if err := <-runErr; err != nil {
		return rep, err
	}
	st := m.Stats()
	rep.MoverRetries = st.Retries
	rep.Reruns = db.Stats().Reruns
	if st.DeadLettered > 0 {
		return rep, fmt.Errorf("%d purchases dead-lettered", st.DeadLettered)
	}

	// Read the stream back and check it against what committed.
	want := make(map[string]int64)
	err = db.Run(ctx, func(tx *stm.Tx) error {
		for _, p := range players {
			n, _ := counts.Get(tx, p)
			want[p] = n
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.Published, err = check(ctx, sink, c.Stream, q.ID(), want)
	rep.Elapsed = time.Since(began)
	return rep, err
}

// check reads every message of the stream written by this queue and checks
// that each player's purchases are numbered 1..want[player], each once, in
// order. It returns how many messages it read.
func check(ctx context.Context, sink *natssink.Sink, stream, writer string, want map[string]int64) (int, error) {
	st, err := sink.JetStream().Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	got := map[string]int64{}
	n := 0
	for seq := uint64(1); ; seq++ {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(stream+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return n, err
		}
		seq = msg.Sequence
		if msg.Header.Get(natssink.HeaderWriter) != writer {
			continue
		}
		n++
		var p Purchase
		if err := json.Unmarshal(msg.Data, &p); err != nil {
			return n, fmt.Errorf("message %d: %w", msg.Sequence, err)
		}
		if p.N != got[p.Player]+1 {
			return n, fmt.Errorf("player %s: purchase %d follows %d (duplicate, lost or out of order)", p.Player, p.N, got[p.Player])
		}
		got[p.Player] = p.N
	}
	for p, w := range want {
		if got[p] != w {
			return n, fmt.Errorf("player %s: %d purchases committed, %d published", p, w, got[p])
		}
	}
	return n, nil
}

func waitUntil(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(time.Minute)
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errors.New("timed out")
		case <-t.C:
		}
	}
	return nil
}

func main() {
	c := Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	flag.StringVar(&c.URL, "url", os.Getenv("ZEST_NATS_URL"), "NATS server URL (default: start one in this process)")
	flag.StringVar(&c.Stream, "stream", "PURCHASES", "JetStream stream (created if missing; subjects STREAM.>)")
	flag.IntVar(&c.Players, "players", 8, "players")
	flag.IntVar(&c.Buyers, "buyers", 16, "concurrent buyers")
	flag.IntVar(&c.Purchases, "purchases", 2000, "purchase attempts")
	flag.Int64Var(&c.Coins, "coins", 1000, "coins per player at the start")
	flag.BoolVar(&c.Restart, "restart", true, "restart the embedded server mid-run")
	flag.Uint64Var(&c.Seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()
	dir, err := os.MkdirTemp("", "zest-purchase-nats-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	c.Dir = dir
	rep, err := Run(context.Background(), c)
	fmt.Printf("purchases committed %d, rolled back (not enough coins) %d; messages published %d; transaction reruns %d; server restarts %d; mover retries %d; %v\n",
		rep.Committed, rep.RolledBack, rep.Published, rep.Reruns, rep.ServerRestarts, rep.MoverRetries, rep.Elapsed.Round(time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("OK: every committed purchase is in the stream exactly once, in per-player commit order; no rolled-back one is")
}
