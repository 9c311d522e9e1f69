//go:build unix

package model

import (
	"math"
	"syscall"
)

// cpuSeconds is the user+system CPU time of the process so far; on a shared
// machine it is a steadier measure than wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
