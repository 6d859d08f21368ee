package s3sink_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/mover"
	"github.com/zest-stm/zest/mover/s3sink"
)

// TestLandedCheckIdentifiesWriter (issue 11, item 1): the check of what
// landed compares the writer (queue id) and the sequence number. An object
// written by another queue with a higher Zest-Seq is not "newer already
// landed": the entry is written. (Before, comparing only the sequence
// number, such an entry was acked without being written: a lost write.)
func TestLandedCheckIdentifiesWriter(t *testing.T) {
	e := setup(t, nil)
	e.bucket(t, "writers", false)
	ctx := context.Background()
	c := e.sink.Client()
	putRaw := func(body, writer, seq string) {
		_, err := c.PutObject(ctx, "writers", "obj", bytes.NewReader([]byte(body)), int64(len(body)), minio.PutObjectOptions{
			UserMetadata: map[string]string{s3sink.MetaWriter: writer, s3sink.MetaSeq: seq}})
		require.NoError(t, err)
	}
	deliver := func(writer string, seq uint64, body string) {
		d := mover.Delivery{Item: effectqueue.Item{Entry: s3sink.Put("writers", "obj", []byte(body), "", nil), Seq: seq, OpID: "op"},
			Writer: writer, Attempt: 2, MayHaveLanded: true}
		require.NoError(t, e.sink.Apply(ctx, d))
	}
	putRaw("from-other-queue", "other", "99")
	deliver("mine", 1, "mine-1")
	body, meta := get(t, c, "writers", "obj", "")
	assert.Equal(t, "mine-1", body, "another writer's higher sequence number is not a landing")
	assert.Equal(t, "mine", meta[s3sink.MetaWriter])

	putRaw("mine-5", "mine", "5")
	deliver("mine", 3, "mine-3")
	body, _ = get(t, c, "writers", "obj", "")
	assert.Equal(t, "mine-5", body, "the same writer's newer entry landed: not rolled back")

	putRaw("no-writer", "", "7")
	deliver("mine", 6, "mine-6")
	body, _ = get(t, c, "writers", "obj", "")
	assert.Equal(t, "mine-6", body, "an object without a writer never counts as landed")
}

// failFirst fails each entry's first attempt before it reaches the store
// (a timeout before the request left), so the retry is MayHaveLanded.
type failFirst struct {
	mover.Sink
	failed atomic.Int64
}

func (f *failFirst) Apply(ctx context.Context, d mover.Delivery) error {
	if d.Attempt == 1 {
		f.failed.Add(1)
		return errors.New("injected: timeout before sending")
	}
	return f.Sink.Apply(ctx, d)
}

// TestRecreatedQueueIsNotTakenAsLanded: queue A writes 5 versions of an
// object; a new queue B (its sequence restarts at 1) writes the object
// once, its first attempt failing. The retry must write B's version.
func TestRecreatedQueueIsNotTakenAsLanded(t *testing.T) {
	e := setup(t, nil)
	e.bucket(t, "recreated", false)
	for i := range 5 {
		e.commit(t, s3sink.Put("recreated", "obj", []byte{'a', byte('0' + i)}, "", nil))
	}
	m, stop := e.run(t, nil)
	drain(t, m)
	require.NoError(t, stop())
	require.NoError(t, e.q.Close())

	e.dir = t.TempDir() // a new queue: new id, sequence from 1
	e.open(t)
	defer e.q.Close()
	e.commit(t, s3sink.Put("recreated", "obj", []byte("from-B"), "", nil))
	ff := &failFirst{Sink: e.sink}
	m2, err := mover.New(e.q, map[string]mover.Sink{"s3": ff}, &mover.Options{Logger: quiet, BaseBackoff: 5e6, MaxBackoff: 5e7})
	require.NoError(t, err)
	go func() { _ = m2.Run(context.Background()) }()
	drain(t, m2)
	require.NoError(t, m2.Shutdown(context.Background()))
	assert.Equal(t, int64(1), ff.failed.Load())
	body, meta := get(t, e.sink.Client(), "recreated", "obj", "")
	assert.Equal(t, "from-B", body)
	assert.Equal(t, e.q.ID(), meta[s3sink.MetaWriter])
}
