package mover

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

const (
	levelDebug = slog.LevelDebug
	levelInfo  = slog.LevelInfo
	levelWarn  = slog.LevelWarn
	levelError = slog.LevelError
)

// logBurst is how many state-change lines the mover logs per
// Options.LogInterval; beyond it, lines are counted and reported in the
// interval's summary line.
const logBurst = 10

// logLimiter bounds the mover's log volume during an outage: state changes
// are logged up to logBurst per interval, the rest are counted.
//
// A logLimiter is safe for concurrent use.
type logLimiter struct {
	logger   *slog.Logger
	interval time.Duration

	mu struct {
		sync.Mutex
		windowStart time.Time
		inWindow    int // lines logged in the current window
		suppressed  int // lines dropped since the last summary
	}
}

func newLogLimiter(l *slog.Logger, interval time.Duration) *logLimiter {
	return &logLimiter{logger: l, interval: interval}
}

func (l *logLimiter) log(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	if !l.logger.Enabled(ctx, level) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.mu.windowStart) >= l.interval {
		l.mu.windowStart, l.mu.inWindow = now, 0
	}
	ok := l.mu.inWindow < logBurst
	if ok {
		l.mu.inWindow++
	} else {
		l.mu.suppressed++
	}
	l.mu.Unlock()
	if ok {
		l.logger.Log(ctx, level, msg, args...)
	}
}

// takeSuppressed returns and resets the count of dropped lines.
func (l *logLimiter) takeSuppressed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.mu.suppressed
	l.mu.suppressed = 0
	return n
}

// summaryLoop logs, once per Options.LogInterval, one line summing up what
// went wrong in the interval, if anything is failing or lines were dropped.
func (m *Mover) summaryLoop(quit <-chan struct{}) {
	t := time.NewTicker(m.opts.LogInterval)
	defer t.Stop()
	var lastRetries, lastDead, lastState uint64
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		retries, dead, state := m.stats.retries.Load(), m.stats.deadLettered.Load(), m.stats.stateRetries.Load()
		suppressed := m.logs.takeSuppressed()
		m.mu.Lock()
		failing := m.mu.failing
		var oldestKey, oldestClass string
		var oldest time.Time
		if failing > 0 {
			for _, l := range m.mu.lanes {
				if l.failing && (oldest.IsZero() || l.failingSince.Before(oldest)) {
					oldest, oldestKey, oldestClass = l.failingSince, l.key, l.errClass
				}
			}
		}
		m.mu.Unlock()
		if failing == 0 && suppressed == 0 {
			lastRetries, lastDead, lastState = retries, dead, state
			continue
		}
		args := []any{"failing_lanes", failing, "retries", retries - lastRetries, "dead_lettered", dead - lastDead,
			"state_write_retries", state - lastState, "log_lines_suppressed", suppressed, "interval", m.opts.LogInterval}
		if failing > 0 {
			args = append(args, "oldest_failing_key", oldestKey, "oldest_failing_for", time.Since(oldest).Round(time.Millisecond),
				"oldest_class", oldestClass)
		}
		m.opts.Logger.Warn("mover: delivery summary", args...)
		lastRetries, lastDead, lastState = retries, dead, state
	}
}
