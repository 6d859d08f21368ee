package effectqueue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// TestOptions: Open validates all of Options at once. Each case's error
// wraps ErrInvalidOptions and names every invalid field; nothing is opened
// (the directory stays empty).
func TestOptions(t *testing.T) {
	own, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithMemTableSize(16 << 20))
	require.NoError(t, err)
	defer own.Close()
	closed, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	require.NoError(t, err)
	require.NoError(t, closed.Close())

	cases := []struct {
		name string
		opts *effectqueue.Options
		want []string // each must appear in the error
	}{
		{"nil", nil, []string{"set Dir or Badger"}},
		{"neither Dir nor Badger", &effectqueue.Options{}, []string{"Dir, Badger: exactly one must be set"}},
		{"both", &effectqueue.Options{Dir: "x", Badger: own}, []string{"Dir, Badger: exactly one must be set"}},
		{"every negative at once", &effectqueue.Options{Dir: "x", FlushInterval: -time.Millisecond, MaxEntrySize: -1,
			AckBatch: -2, GCInterval: -time.Second, MemTableSize: -3},
			[]string{"FlushInterval is -1ms", "MaxEntrySize is -1", "AckBatch is -2", "GCInterval is -1s", "MemTableSize is -3"}},
		{"unknown durability", &effectqueue.Options{Dir: "x", Durability: 7}, []string{"Durability is 7"}},
		{"entry smaller than its overhead", &effectqueue.Options{Dir: "x", MaxEntrySize: 10}, []string{"MaxEntrySize is 10, must be more than 64"}},
		{"tiny memtable", &effectqueue.Options{Dir: "x", MemTableSize: 1000}, []string{"MemTableSize is 1000, must be at least"}},
		{"entry larger than an atomic write", &effectqueue.Options{Dir: "x", MaxEntrySize: 1 << 30}, []string{"MaxEntrySize is 1073741824, more than half the largest atomic Badger write"}},
		{"default entry size, small memtable", &effectqueue.Options{Dir: "x", MemTableSize: 4 << 20}, []string{"MaxEntrySize is 1048576, more than half"}},
		{"ack batch larger than an atomic write", &effectqueue.Options{Dir: "x", AckBatch: 1 << 20}, []string{"AckBatch is 1048576"}},
		{"owner's Badger: ack batch", &effectqueue.Options{Badger: own, AckBatch: 1 << 20}, []string{"AckBatch is 1048576"}},
		{"owner's Badger with owned-only fields", &effectqueue.Options{Badger: own, MemTableSize: 32 << 20, GCInterval: time.Second},
			[]string{"MemTableSize is 33554432: it applies only to a Badger the queue opens", "GCInterval is 1s: it applies only"}},
		{"closed Badger", &effectqueue.Options{Badger: closed, MaxEntrySize: -5}, []string{"Badger: the database is closed", "MaxEntrySize is -5"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := stm.Open(nil)
			require.NoError(t, err)
			if c.opts != nil && c.opts.Dir == "x" {
				c.opts.Dir = t.TempDir()
			}
			q, err := effectqueue.Open(db, c.opts)
			require.Error(t, err)
			assert.Nil(t, q)
			assert.True(t, errors.Is(err, effectqueue.ErrInvalidOptions), "%v", err)
			for _, w := range c.want {
				assert.ErrorContains(t, err, w)
			}
			t.Log(err)
			// Nothing was opened: the DB has no log, so a durable commit
			// is refused, and the directory is empty.
			if c.opts != nil && c.opts.Dir != "" {
				assert.NoFileExists(t, c.opts.Dir+"/MANIFEST")
			}
		})
	}

	// The edges that are valid open.
	for _, o := range []*effectqueue.Options{
		{Dir: t.TempDir(), MaxEntrySize: 65},
		{Dir: t.TempDir(), MemTableSize: 1 << 20, MaxEntrySize: 64 << 10},
		{Badger: own, Prefix: "edge/"},
	} {
		db, _ := stm.Open(nil)
		q, err := effectqueue.Open(db, o)
		require.NoError(t, err)
		require.NoError(t, q.Close())
	}
}
