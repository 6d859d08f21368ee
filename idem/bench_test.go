package idem_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/table"
)

// payments is the benchmarks' business: a transfer between two of 1,024
// accounts plus a new order record, the shape of table's BenchmarkTransfer
// with the order a payment writes.
type payments struct {
	db       *stm.DB
	accounts *table.Table[int, int64]
	orders   *table.Table[string, int64]
	tokens   *idem.Tokens
	// records is a bare table with the tokens' key and value shapes, for
	// the "record" mode.
	records *table.Table[string, record]
}

// record has the size and shape of a token (32 bytes, one string).
type record struct {
	expires int64
	data    string
	a       uint32
	b       uint16
	c, d    uint8
}

// mode is what a payment does besides the business writes.
type mode int

const (
	// plain: the business writes only.
	plain mode = iota
	// bare: plus one insert of a token-shaped record, with no token logic:
	// the floor under any token design that stores one record per token.
	bare
	// tokens: plus Begin and Finish.
	tokens
)

var modes = []struct {
	name string
	mode mode
}{{"plain", plain}, {"record", bare}, {"tokens", tokens}}

func newPayments(b *testing.B, durableDir string) *payments {
	b.Helper()
	db, err := stm.Open(nil)
	if err != nil {
		b.Fatal(err)
	}
	p := &payments{db: db}
	if durableDir != "" {
		q, err := effectqueue.Open(db, &effectqueue.Options{Dir: durableDir})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = q.Close() })
		p.accounts, err = table.NewDurable[int, int64](db, "accounts", nil)
		if err == nil {
			p.orders, err = table.NewDurable[string, int64](db, "orders", nil)
		}
		if err != nil {
			b.Fatal(err)
		}
	} else {
		if p.accounts, err = table.New[int, int64](db, "accounts"); err == nil {
			p.orders, err = table.New[string, int64](db, "orders")
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if p.tokens, err = idem.New(db, "tokens", nil); err != nil {
		b.Fatal(err)
	}
	if p.records, err = table.New[string, record](db, "records"); err != nil {
		b.Fatal(err)
	}
	err = db.Run(context.Background(), func(tx *stm.Tx) error {
		for i := range 1024 {
			p.accounts.Put(tx, i, 1_000_000)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

var receipt = []byte("receipt-01234567")

// pay runs one payment; with tokens, guarded by Begin and Finish.
func (p *payments) pay(ctx context.Context, i int, withTokens bool) error {
	m := plain
	if withTokens {
		m = tokens
	}
	return p.payMode(ctx, i, m)
}

func (p *payments) payMode(ctx context.Context, i int, m mode) error {
	from, to := i&1023, (i*7+1)&1023
	if from == to {
		to = (to + 1) & 1023
	}
	order := strconv.Itoa(i)
	key := idem.Key{Scope: "shop", ID: order, Scene: "pay"}
	withTokens := m == tokens
	return p.db.Run(ctx, func(tx *stm.Tx) error {
		if withTokens {
			_, replay, err := p.tokens.Begin(tx, key, nil)
			if err != nil || replay {
				return err
			}
		}
		if m == bare {
			p.records.Put(tx, "shop\x00"+order+"\x00pay", record{expires: 1, data: string(receipt)})
		}
		a, _ := p.accounts.Get(tx, from)
		c, _ := p.accounts.Get(tx, to)
		p.accounts.Put(tx, from, a-1)
		p.accounts.Put(tx, to, c+1)
		p.orders.Put(tx, order, 1)
		if withTokens {
			return p.tokens.Finish(tx, key, receipt)
		}
		return nil
	})
}

// BenchmarkPayment compares a payment transaction without tokens (plain,
// the anchor) and with Begin+Finish (tokens), on an in-memory DB, one
// goroutine; record is the plain payment plus one insert of a token-sized
// record in a bare table, what any design storing a token per operation
// pays at least. Every iteration pays a new order, so tokens accumulate:
// run it with a fixed -benchtime such as 200000x.
func BenchmarkPayment(b *testing.B) {
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			p := newPayments(b, "")
			ctx := context.Background()
			b.ReportAllocs()
			cpu := testutil.CPUTime()
			n := 0
			for i := 0; b.Loop(); i++ {
				if err := p.payMode(ctx, i, mode.mode); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64((testutil.CPUTime()-cpu).Nanoseconds())/float64(n), "cpu-ns/op")
		})
	}
}

// BenchmarkPaymentInterleaved alternates the two payments of
// BenchmarkPayment, one of each per iteration on two separate DBs, and
// times each, so that both see the same machine load (this machine is
// shared). It reports plain-ns and tokens-ns per payment and their ratio;
// each includes ~40 ns of time.Now calls. Run it with a fixed -benchtime
// such as 200000x.
func BenchmarkPaymentInterleaved(b *testing.B) {
	plain, tokens := newPayments(b, ""), newPayments(b, "")
	ctx := context.Background()
	var dp, dt time.Duration
	n := 0
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		if err := plain.pay(ctx, i, false); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := tokens.pay(ctx, i, true); err != nil {
			b.Fatal(err)
		}
		dt += time.Since(t1)
		dp += t1.Sub(t0)
		n++
	}
	b.ReportMetric(float64(dp.Nanoseconds())/float64(n), "plain-ns")
	b.ReportMetric(float64(dt.Nanoseconds())/float64(n), "tokens-ns")
	b.ReportMetric(float64(dt)/float64(dp), "ratio")
}

// BenchmarkPaymentDurable is BenchmarkPayment on a durable DB (sync mode,
// one fsync per group commit), from 64 goroutines.
func BenchmarkPaymentDurable(b *testing.B) {
	for _, mode := range []struct {
		name   string
		tokens bool
	}{{"plain", false}, {"tokens", true}} {
		b.Run(mode.name, func(b *testing.B) {
			p := newPayments(b, b.TempDir())
			ctx := context.Background()
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := p.pay(ctx, int(next.Add(1)), mode.tokens); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPaymentDurableInterleaved alternates batches of 64 concurrent
// payments (one group commit's worth) on two durable DBs, without and with
// tokens, and times each batch, so that both see the same machine load.
// An iteration is one batch of each. It reports plain-ns and tokens-ns per
// payment and their ratio. Run it with a fixed -benchtime such as 300x.
func BenchmarkPaymentDurableInterleaved(b *testing.B) {
	plain, tokens := newPayments(b, b.TempDir()), newPayments(b, b.TempDir())
	ctx := context.Background()
	const batch = 64
	var dp, dt time.Duration
	next := 0
	runBatch := func(p *payments, withTokens bool) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, batch)
		for g := range batch {
			i := next + g
			wg.Go(func() { errs[g] = p.pay(ctx, i, withTokens) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	n := 0
	for b.Loop() {
		dp += runBatch(plain, false)
		dt += runBatch(tokens, true)
		next += batch
		n += batch
	}
	b.ReportMetric(float64(dp.Nanoseconds())/float64(n), "plain-ns")
	b.ReportMetric(float64(dt.Nanoseconds())/float64(n), "tokens-ns")
	b.ReportMetric(float64(dt)/float64(dp), "ratio")
}

// BenchmarkSweep1M measures Expire removing 1,000,000 expired tokens in
// transactions of 256 (the default batch), found through the expiry index.
// Run it with -benchtime 1x: the setup (not timed) begins the tokens.
func BenchmarkSweep1M(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		clk := newClock()
		db, tokens := openMem(b, &idem.Options{Now: clk.Now})
		for i := 0; i < n; i += 1000 {
			err := db.Run(ctx, func(tx *stm.Tx) error {
				for j := i; j < i+1000; j++ {
					k := idem.Key{Scope: "shop", ID: strconv.Itoa(j), Scene: "pay"}
					if _, _, err := tokens.Begin(tx, k, nil); err != nil {
						return err
					}
					if err := tokens.Finish(tx, k, receipt); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			clk.Advance(time.Millisecond) // spread them over ~1,000 buckets
		}
		clk.Advance(25 * time.Hour)
		b.StartTimer()
		start, cpu := time.Now(), testutil.CPUTime()
		removed, err := tokens.Expire(ctx)
		if err != nil || removed != n {
			b.Fatalf("removed %d of %d: %v", removed, n, err)
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/n, "ns/token")
		b.ReportMetric(float64((testutil.CPUTime()-cpu).Nanoseconds())/n, "cpu-ns/token")
	}
}
