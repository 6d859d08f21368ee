package s3sink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/internal/miniotest"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/s3sink"
	"github.com/zest-stm/zest/stm"
)

// quiet drops the mover's logs below errors; retries are expected here.
var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 1}))

type env struct {
	srv  *miniotest.Server
	sink *s3sink.Sink
	db   *stm.DB
	q    *effectqueue.Queue
	dir  string
}

func setup(t *testing.T, so *s3sink.Options) *env {
	t.Helper()
	e := &env{srv: miniotest.Start(t), dir: t.TempDir()}
	o := s3sink.Options{}
	if so != nil {
		o = *so
	}
	o.Endpoint, o.AccessKey, o.SecretKey = e.srv.Endpoint, e.srv.AccessKey, e.srv.SecretKey
	var err error
	e.sink, err = s3sink.New(&o)
	require.NoError(t, err)
	e.open(t)
	return e
}

func (e *env) open(t *testing.T) {
	t.Helper()
	var err error
	e.db, err = stm.Open(nil)
	require.NoError(t, err)
	e.q, err = effectqueue.Open(e.db, &effectqueue.Options{Dir: e.dir})
	require.NoError(t, err)
}

func (e *env) bucket(t *testing.T, name string, versioned bool) {
	t.Helper()
	c := e.sink.Client()
	require.NoError(t, c.MakeBucket(context.Background(), name, minio.MakeBucketOptions{}))
	if versioned {
		require.NoError(t, c.EnableVersioning(context.Background(), name))
	}
}

func (e *env) commit(t *testing.T, entries ...effectqueue.Entry) {
	t.Helper()
	require.NoError(t, e.db.Run(context.Background(), func(tx *stm.Tx) error {
		for _, en := range entries {
			if err := e.q.Enqueue(tx, en); err != nil {
				return err
			}
		}
		return nil
	}))
}

// run starts a mover; the returned function shuts it down and returns
// Run's error.
func (e *env) run(t *testing.T, o *mover.Options) (*mover.Mover, func() error) {
	t.Helper()
	opts := mover.Options{BaseBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if o != nil {
		opts = *o
	}
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	m, err := mover.New(e.q, map[string]mover.Sink{"s3": e.sink}, &opts)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- m.Run(context.Background()) }()
	return m, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			return err
		}
		return <-errc
	}
}

func drain(t *testing.T, m *mover.Mover) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, m.WaitDrained(ctx), "stats %+v", m.Stats())
}

func get(t *testing.T, c *minio.Client, bucket, object, version string) (string, map[string]string) {
	t.Helper()
	o, err := c.GetObject(context.Background(), bucket, object, minio.GetObjectOptions{VersionID: version})
	require.NoError(t, err)
	defer o.Close()
	b, err := io.ReadAll(o)
	require.NoError(t, err)
	st, err := o.Stat()
	require.NoError(t, err)
	return string(b), st.UserMetadata
}

// versions returns the payloads of every version of each object, oldest
// first.
func versions(t *testing.T, c *minio.Client, bucket string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{WithVersions: true, Recursive: true}) {
		require.NoError(t, o.Err)
		if o.IsDeleteMarker {
			out[o.Key] = append(out[o.Key], "<deleted>")
			continue
		}
		body, _ := get(t, c, bucket, o.Key, o.VersionID)
		out[o.Key] = append(out[o.Key], body)
	}
	for k := range out {
		slices.Reverse(out[k]) // listed newest first
	}
	return out
}

func TestHappyPath(t *testing.T) {
	e := setup(t, nil)
	e.bucket(t, "receipts", false)
	for i := range 20 {
		e.commit(t, s3sink.Put("receipts", fmt.Sprintf("r%02d.json", i), []byte(fmt.Sprintf(`{"n":%d}`, i)),
			"application/json", map[string]string{"player": "alice"}))
	}
	m, stop := e.run(t, nil)
	drain(t, m)
	require.NoError(t, stop())
	st := m.Stats()
	assert.Equal(t, uint64(20), st.Delivered)
	assert.Zero(t, st.DeadLettered)
	assert.Positive(t, st.LatencyP50)
	body, meta := get(t, e.sink.Client(), "receipts", "r07.json", "")
	assert.Equal(t, `{"n":7}`, body)
	assert.Equal(t, "alice", meta["Player"])
	assert.NotEmpty(t, meta[s3sink.MetaOp])
	info, err := e.sink.Client().StatObject(context.Background(), "receipts", "r07.json", minio.StatObjectOptions{})
	require.NoError(t, err)
	assert.Equal(t, "application/json", info.ContentType)
	assert.Zero(t, e.q.Depth())
}

// TestPerKeyOrder: many versions of several objects, committed in order,
// land in the same order on each object (checked with bucket versioning),
// while keys proceed in parallel.
func TestPerKeyOrder(t *testing.T) {
	e := setup(t, nil)
	e.bucket(t, "ordered", true)
	const keys, updates = 8, 25
	for u := range updates {
		var batch []effectqueue.Entry
		for k := range keys {
			batch = append(batch, s3sink.Put("ordered", fmt.Sprintf("k%d", k), []byte(strconv.Itoa(u)), "", nil))
		}
		e.commit(t, batch...)
	}
	m, stop := e.run(t, &mover.Options{Concurrency: 4})
	drain(t, m)
	require.NoError(t, stop())
	v := versions(t, e.sink.Client(), "ordered")
	require.Len(t, v, keys)
	want := make([]string, updates)
	for u := range want {
		want[u] = strconv.Itoa(u)
	}
	for k, got := range v {
		assert.Equal(t, want, got, "key %s", k)
	}
}

// TestPermanentErrors: a missing bucket (creation off) and an invalid
// object name are dead-lettered with the reason; other keys go on.
func TestPermanentErrors(t *testing.T) {
	e := setup(t, nil)
	e.bucket(t, "good", false)
	long := strings.Repeat("x", 1100)
	e.commit(t, s3sink.Put("missing-bucket", "a", []byte("1"), "", nil))
	e.commit(t, s3sink.Put("good", long, []byte("2"), "", nil))
	e.commit(t, s3sink.Put("good", "fine", []byte("3"), "", nil))
	e.commit(t, effectqueue.Entry{Kind: "s3.put", Key: "no-slash"})
	e.commit(t, effectqueue.Entry{Kind: "ftp.put", Key: "good/x"})
	m, stop := e.run(t, nil)
	drain(t, m)
	require.NoError(t, stop())
	body, _ := get(t, e.sink.Client(), "good", "fine", "")
	assert.Equal(t, "3", body)
	dead, err := e.q.DeadLetters(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Len(t, dead, 4)
	reasons := map[string]string{}
	for _, d := range dead {
		reasons[d.Key] = d.Reason
	}
	assert.Contains(t, reasons["missing-bucket/a"], "does not exist")
	assert.Contains(t, reasons["good/"+long], "invalid object name")
	assert.Contains(t, reasons["no-slash"], "not bucket/object")
	assert.Contains(t, reasons["good/x"], `no sink for kind "ftp.put"`)
	assert.Equal(t, uint64(4), m.Stats().DeadLettered)
	assert.Zero(t, m.Stats().Retries, "permanent errors are not retried")
}

func TestCreateBuckets(t *testing.T) {
	e := setup(t, &s3sink.Options{CreateBuckets: true})
	e.commit(t, s3sink.Put("made-on-demand", "a", []byte("1"), "", nil))
	m, stop := e.run(t, nil)
	drain(t, m)
	require.NoError(t, stop())
	body, _ := get(t, e.sink.Client(), "made-on-demand", "a", "")
	assert.Equal(t, "1", body)
}

// TestServerOutage: MinIO is stopped while entries are committed and
// retried, then restarted. Nothing is lost, order is kept, and no object
// has a duplicate version.
func TestServerOutage(t *testing.T) {
	e := setup(t, nil)
	e.bucket(t, "outage", true)
	// MinIO can take many seconds to restart on a loaded machine: attempts
	// must not run out meanwhile (exhaustion is TestMaxAttempts' subject).
	m, stop := e.run(t, &mover.Options{BaseBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, MaxAttempts: 100_000})
	e.commit(t, s3sink.Put("outage", "k", []byte("0"), "", nil))
	drain(t, m)
	e.srv.Stop()
	for u := 1; u <= 10; u++ {
		e.commit(t, s3sink.Put("outage", "k", []byte(strconv.Itoa(u)), "", nil),
			s3sink.Put("outage", fmt.Sprintf("other%d", u), []byte("x"), "", nil))
	}
	// Wait until the mover has failed at least once, then bring MinIO back.
	for m.Stats().Retries == 0 {
		waitProgress(t, m)
	}
	require.NoError(t, e.srv.Restart())
	drain(t, m)
	require.NoError(t, stop())
	v := versions(t, e.sink.Client(), "outage")
	assert.Equal(t, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}, v["k"])
	for u := 1; u <= 10; u++ {
		assert.Len(t, v[fmt.Sprintf("other%d", u)], 1)
	}
	assert.Zero(t, m.Stats().DeadLettered)
	t.Logf("stats %+v", m.Stats())
}

// waitProgress waits for the mover's retry counter to move, by watching
// the retry state it persists. It gives up after 30s.
func waitProgress(t *testing.T, m *mover.Mover) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	before := m.Stats().Retries
	for m.Stats().Retries == before {
		if time.Now().After(deadline) {
			t.Fatalf("the mover made no attempt in 30s: %+v", m.Stats())
		}
		<-tick.C
	}
}

// TestGracefulShutdown: Shutdown lets the entry being applied finish,
// takes no new entries, dead-letters nothing; a new mover delivers the rest.
func TestGracefulShutdown(t *testing.T) {
	e := setup(t, nil)
	e.bucket(t, "shut", false)
	for i := range 200 {
		e.commit(t, s3sink.Put("shut", fmt.Sprintf("o%03d", i), []byte("x"), "", nil))
	}
	m, stop := e.run(t, &mover.Options{Concurrency: 2})
	for m.Stats().Delivered == 0 {
		waitDelivered(t, m)
	}
	require.NoError(t, stop())
	st := m.Stats()
	assert.Zero(t, st.DeadLettered)
	assert.Zero(t, st.InFlight)
	t.Logf("delivered %d of 200 before shutdown", st.Delivered)
	m2, stop2 := e.run(t, nil)
	drain(t, m2)
	require.NoError(t, stop2())
	n := 0
	for o := range e.sink.Client().ListObjects(context.Background(), "shut", minio.ListObjectsOptions{Recursive: true}) {
		require.NoError(t, o.Err)
		n++
	}
	assert.Equal(t, 200, n)
	dead, _ := e.q.DeadLetters(context.Background(), 0, 10)
	assert.Empty(t, dead)
}

func waitDelivered(t *testing.T, m *mover.Mover) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for m.Stats().Delivered == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("nothing delivered in 30s")
		case <-tick.C:
		}
	}
}

func TestBadEndpointAndCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := s3sink.New(&s3sink.Options{Endpoint: "http://" + srv.Endpoint, AccessKey: "a", SecretKey: "b"})
	assert.ErrorContains(t, err, "without a scheme")
	_, err = s3sink.New(&s3sink.Options{Endpoint: srv.Endpoint})
	if os.Getenv("ZEST_S3_ACCESS_KEY") == "" && os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		assert.ErrorContains(t, err, "no credentials")
	}

	closed := freeAddr(t)
	s, err := s3sink.New(&s3sink.Options{Endpoint: closed, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	require.NoError(t, err)
	err = s.Check(ctx, "")
	assert.ErrorContains(t, err, "cannot reach "+closed)

	s, err = s3sink.New(&s3sink.Options{Endpoint: srv.Endpoint, AccessKey: "nobody", SecretKey: srv.SecretKey})
	require.NoError(t, err)
	assert.ErrorContains(t, s.Check(ctx, ""), "rejected the access key")

	s, err = s3sink.New(&s3sink.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: "wrong-secret"})
	require.NoError(t, err)
	err = s.Check(ctx, "")
	assert.ErrorContains(t, err, "rejected the secret key")
	assert.NotContains(t, err.Error(), srv.SecretKey, "credentials are never printed")

	s, err = s3sink.New(&s3sink.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	require.NoError(t, err)
	assert.NoError(t, s.Check(ctx, ""))
	assert.ErrorContains(t, s.Check(ctx, "absent-bucket"), "does not exist")
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	srv := miniotest.Start(t)
	addr := srv.Endpoint
	srv.Stop()
	return addr
}
