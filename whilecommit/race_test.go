//go:build race

package whilecommit_test

const raceEnabled = true
