//go:build amd64 || arm64

package stm

// getg returns the address of the running goroutine's runtime descriptor:
// an identity that stays the same while the goroutine runs, and that no
// other running goroutine has. It costs a few instructions.
func getg() uintptr

// fastG reports whether getg costs a few instructions, so that every Tx
// method may check the goroutine.
const fastG = true
