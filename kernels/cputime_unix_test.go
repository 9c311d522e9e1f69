//go:build unix

package kernels

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processCPUTime is the user+system CPU time of this process so far.
func processCPUTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// machineBusyTime is the CPU time all processes have used so far, from the
// first line of /proc/stat (user, nice, system, irq, softirq, in USER_HZ =
// 100 ticks a second); 0 where there is no /proc/stat.
func machineBusyTime() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		n, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
