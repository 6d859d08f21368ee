package effectqueue

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// removeEmptyLogs deletes the empty (0-byte) memtable and value-log files
// of the Badger in dir, with a warning naming each. A process killed while
// Badger creates one of these files (between creating it and sizing it)
// leaves it empty, and Badger then refuses to open the directory
// (dgraph-io/badger#2207). An empty file holds no record, so removing it
// loses nothing.
//
// It does so only while it holds the directory lock Badger takes, so that
// it never touches the files of a Badger that another process (or another
// queue of this process) has open; if the lock is taken it does nothing,
// and badger.Open reports the lock.
func removeEmptyLogs(dir string, log *slog.Logger) {
	unlock, ok := lockDir(dir)
	if !ok {
		return
	}
	defer unlock()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() != 0 {
			continue
		}
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil {
			log.Warn("effectqueue: could not remove an empty Badger file left by a crash; Badger may refuse to open", "file", path, "err", err)
			continue
		}
		log.Warn("effectqueue: removed an empty Badger file left by a crash", "file", path)
	}
}
