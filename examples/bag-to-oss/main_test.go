package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/internal/miniotest"
	"github.com/zest-stm/zest/mover/s3sink"
)

// TestExample runs the example against a real MinIO and relies on its own
// check of the bucket.
func TestExample(t *testing.T) {
	srv := miniotest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		S3:       s3sink.Options{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, CreateBuckets: true},
		Bucket:   "bags",
		Players:  8,
		Workers:  16,
		Removals: 400,
		QueueDir: t.TempDir(),
		Seed:     42,
	})
	require.NoError(t, err)
	assert.Positive(t, rep.Committed)
	assert.Positive(t, rep.RolledBack, "bags run dry, so some removals must roll back")
	assert.Equal(t, int(rep.Committed), rep.Receipts)
	assert.Equal(t, 2*rep.Committed, rep.ObjectsWritten)
	t.Logf("%+v", rep)
}
