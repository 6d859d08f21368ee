package mover

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptions(t *testing.T) {
	_, err := (&Options{Concurrency: -1, MaxAttempts: -2}).withDefaults()
	assert.ErrorContains(t, err, "Concurrency is -1")
	assert.ErrorContains(t, err, "MaxAttempts is -2")
	_, err = (&Options{BaseBackoff: time.Second, MaxBackoff: time.Millisecond}).withDefaults()
	assert.ErrorContains(t, err, "MaxBackoff")
	o, err := (*Options)(nil).withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 16, o.Concurrency)
	assert.Equal(t, 20, o.MaxAttempts)
}

func TestPermanent(t *testing.T) {
	base := errors.New("access denied")
	p := Permanent(base)
	assert.True(t, IsPermanent(p))
	assert.True(t, IsPermanent(fmt.Errorf("put: %w", p)), "still permanent when wrapped")
	assert.ErrorIs(t, p, base)
	assert.False(t, IsPermanent(base))
	assert.Nil(t, Permanent(nil))
}

// TestBackoff: exponential from BaseBackoff, capped at MaxBackoff, with
// full jitter, never below 1ms.
func TestBackoff(t *testing.T) {
	m := &Mover{opts: Options{BaseBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}}
	for attempt := 1; attempt <= 40; attempt++ {
		limit := min(10*time.Millisecond<<min(attempt-1, 30), 80*time.Millisecond)
		for range 200 {
			d := m.backoff(attempt)
			if d < time.Millisecond || d > limit {
				t.Fatalf("attempt %d: backoff %v outside [1ms, %v]", attempt, d, limit)
			}
		}
	}
}
