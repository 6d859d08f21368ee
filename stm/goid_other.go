//go:build !amd64 && !arm64

package stm

import (
	"runtime"
	"strconv"
	"strings"
)

// getg returns an identity of the running goroutine: its id, parsed from
// the first line of its stack trace. Slower than the assembly of amd64 and
// arm64 (about a microsecond), and as good an identity.
func getg() uintptr {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	if i := strings.IndexByte(s, ' '); i > 0 {
		s = s[:i]
	}
	id, _ := strconv.ParseUint(s, 10, 64)
	return uintptr(id)
}

// fastG reports whether getg costs a few instructions, so that every Tx
// method may check the goroutine.
const fastG = false
