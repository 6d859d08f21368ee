package effectqueue_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/effectqueue"
	"github.com/zest-stm/zest/stm"
)

// TestOpenAfterEmptyBadgerFiles: a process killed while Badger creates a
// memtable (.mem) or value-log (.vlog) file leaves it empty, and Badger
// then refuses to open the directory (dgraph-io/badger#2207). Open removes
// such files, says so in a warning, and the queue opens with its entries.
func TestOpenAfterEmptyBadgerFiles(t *testing.T) {
	for _, files := range [][]string{{"00009.mem"}, {"000009.vlog"}, {"00009.mem", "000009.vlog", "00010.mem"}} {
		t.Run(strings.Join(files, "+"), func(t *testing.T) {
			dir := t.TempDir()
			db, q := openQueue(t, dir, nil)
			require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
				return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("kept")})
			}))
			require.NoError(t, q.Close())
			for _, f := range files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, f), nil, 0o644))
			}
			var logs bytes.Buffer
			db, err := stm.Open(nil)
			require.NoError(t, err)
			q, err = effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			require.NoError(t, err, "Open after a crash left empty files")
			defer q.Close()
			assert.Equal(t, []string{"kept"}, payloads(readAll(t, q)))
			for _, f := range files {
				assert.Contains(t, logs.String(), "removed an empty Badger file left by a crash")
				assert.Contains(t, logs.String(), f)
			}
			// And it goes on writing.
			require.NoError(t, db.Run(context.Background(), func(tx *stm.Tx) error {
				return q.Enqueue(tx, effectqueue.Entry{Kind: "k", Payload: []byte("after")})
			}))
			assert.Equal(t, []string{"kept", "after"}, payloads(readAll(t, q)))
		})
	}
}

// TestOpenLeavesLockedDirAlone: a second Open of a directory whose Badger is
// open fails with Badger's lock error and removes nothing, even an empty
// file, since the open Badger may be about to write it.
func TestOpenLeavesLockedDirAlone(t *testing.T) {
	dir := t.TempDir()
	_, q := openQueue(t, dir, nil)
	defer q.Close()
	empty := filepath.Join(dir, "99999.mem")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	db, _ := stm.Open(nil)
	_, err := effectqueue.Open(db, &effectqueue.Options{Dir: dir, Logger: quiet})
	require.Error(t, err)
	assert.ErrorContains(t, err, "lock")
	assert.FileExists(t, empty)
	require.NoError(t, os.Remove(empty))
}
