//go:build !unix

package kernels

import "time"

// processCPUTime is unknown here; BenchmarkMatMul then skips its CPU metrics.
func processCPUTime() time.Duration { return 0 }

// machineBusyTime is unknown here; BenchmarkMatMul then skips its load metric.
func machineBusyTime() time.Duration { return 0 }
