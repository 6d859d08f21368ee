//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package effectqueue

import (
	"os"
	"syscall"
)

// lockDir takes the exclusive, non-blocking flock on dir that badger.Open
// takes (Badger locks the directory itself), and returns its release.
func lockDir(dir string) (unlock func(), ok bool) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, true
}
