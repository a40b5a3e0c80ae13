package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Gate waits for a quiet machine before a measurement round.
type Gate struct {
	Disabled  bool
	Window    time.Duration // how long the machine must be quiet; default 3 s
	Threshold float64       // share of all CPUs that other processes may use; default 0.05
	MaxWait   time.Duration // give up after this long; default 10 s
	Interval  time.Duration // sampling period; default 250 ms
}

// GateResult records what the gate saw.
type GateResult struct {
	Passed   bool          `json:"passed"`
	OtherCPU float64       `json:"other_cpu"` // share of all CPUs used by other processes in the last window
	Waited   time.Duration `json:"waited_ns"`
	Skipped  bool          `json:"skipped,omitempty"`
}

// cpuSample is a reading of machine-wide busy and total jiffies and of this process's own.
type cpuSample struct {
	at          time.Time
	busy, total uint64
	self        uint64
}

// parseProcStat reads the aggregate "cpu" line of /proc/stat: total and busy (total minus
// idle and iowait) jiffies.
func parseProcStat(b []byte) (busy, total uint64, err error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, fmt.Errorf("bench: unexpected /proc/stat")
	}
	var idle uint64
	for i, x := range f[1:] {
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		v, err := strconv.ParseUint(string(x), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: /proc/stat: %w", err)
		}
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return total - idle, total, nil
}

// parseSelfStat reads utime+stime (clock ticks) from /proc/self/stat. The command name may
// hold spaces and parentheses, so fields are counted after the last ')'.
func parseSelfStat(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: unexpected /proc/self/stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: short /proc/self/stat")
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: /proc/self/stat times")
	}
	return u + s, nil
}

func sampleCPU() (cpuSample, error) {
	st, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}, err
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return cpuSample{}, err
	}
	busy, total, err := parseProcStat(st)
	if err != nil {
		return cpuSample{}, err
	}
	me, err := parseSelfStat(self)
	if err != nil {
		return cpuSample{}, err
	}
	return cpuSample{at: time.Now(), busy: busy, total: total, self: me}, nil
}

// otherShare returns the share of all CPU time between a and b that processes other than
// this one used.
func otherShare(a, b cpuSample) float64 {
	dt := float64(b.total - a.total)
	if dt <= 0 {
		return 0
	}
	other := float64(b.busy-a.busy) - float64(b.self-a.self)
	if other < 0 {
		other = 0
	}
	return other / dt
}

// Wait blocks until the last Window had other processes below Threshold, or MaxWait passes,
// or ctx ends. It never fails the run: a gate that did not pass is reported as such. Without
// /proc it reports Skipped.
func (g Gate) Wait(ctx context.Context) GateResult {
	if g.Disabled {
		return GateResult{Skipped: true}
	}
	win, thr, maxWait, step := g.Window, g.Threshold, g.MaxWait, g.Interval
	if win <= 0 {
		win = 3 * time.Second
	}
	if thr <= 0 {
		thr = 0.05
	}
	if maxWait <= 0 {
		maxWait = 10 * time.Second
	}
	if step <= 0 {
		step = 250 * time.Millisecond
	}
	start := time.Now()
	first, err := sampleCPU()
	if err != nil {
		return GateResult{Skipped: true}
	}
	samples := []cpuSample{first}
	t := time.NewTicker(step)
	defer t.Stop()
	last := GateResult{OtherCPU: -1}
	for {
		select {
		case <-ctx.Done():
			last.Waited = time.Since(start)
			return last
		case <-t.C:
		}
		s, err := sampleCPU()
		if err != nil {
			return GateResult{Skipped: true, Waited: time.Since(start)}
		}
		samples = append(samples, s)
		// the oldest sample at least win old that leaves the window exactly covered
		j := -1
		for i := len(samples) - 1; i >= 0; i-- {
			if s.at.Sub(samples[i].at) >= win {
				j = i
				break
			}
		}
		if j >= 0 {
			last.OtherCPU = otherShare(samples[j], s)
			samples = samples[j:]
			if last.OtherCPU < thr {
				last.Passed = true
				last.Waited = time.Since(start)
				return last
			}
		}
		if time.Since(start) >= maxWait {
			last.Waited = time.Since(start)
			return last
		}
	}
}
