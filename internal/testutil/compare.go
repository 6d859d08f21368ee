package testutil

import (
	"slices"
	"testing"
	"time"
)

// Round is one round of a benchmark that runs a raw client loop and the
// same work through Zest's mover side by side.
type Round struct {
	RawCPU, MoverCPU   time.Duration // per unit; the mover's includes the commits
	RawRate, MoverRate float64       // units per second
}

// ReportRounds reports the medians over rounds of the raw and mover CPU per
// unit (µs), rates, and the mover/raw ratios of both, as metrics named after
// unit ("obj", "msg").
func ReportRounds(b *testing.B, rounds []Round, unit string) {
	med := func(f func(r Round) float64) float64 {
		v := make([]float64, len(rounds))
		for i, r := range rounds {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(med(func(r Round) float64 { return float64(r.RawCPU.Microseconds()) }), "raw-cpu-us/"+unit)
	b.ReportMetric(med(func(r Round) float64 { return float64(r.MoverCPU.Microseconds()) }), "mover-cpu-us/"+unit)
	b.ReportMetric(med(func(r Round) float64 { return r.RawRate }), "raw-"+unit+"/s")
	b.ReportMetric(med(func(r Round) float64 { return r.MoverRate }), "mover-"+unit+"/s")
	b.ReportMetric(med(func(r Round) float64 { return float64(r.MoverCPU) / float64(r.RawCPU) }), "cpu-ratio")
	b.ReportMetric(med(func(r Round) float64 { return r.MoverRate / r.RawRate }), "throughput-ratio")
}
