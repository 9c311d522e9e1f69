// Package memory decides how a model is held, resident or layer-streamed,
// from its estimated peak memory and the memory this process can still
// take (MemAvailable and the cgroup limit), and reads the peak RSS.
package memory

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tritter-ai/conformance/internal/units"
	"github.com/tritter-ai/conformance/model"
)

// Memory modes (-memory-mode).
const (
	// ModeAuto keeps a model resident when its estimate fits comfortably
	// (ResidentShare of the available memory) and streams it otherwise.
	ModeAuto = "auto"
	// ModeResident stores every layer (model.Options.Streamed false).
	ModeResident = "resident"
	// ModeStreamed regenerates one layer at a time (model.Options.Streamed).
	ModeStreamed = "streamed"
)

// ResidentShare is the share of the available memory up to which
// ModeAuto keeps a model resident; StreamedShare is the share up to which
// it streams one. The remainder covers the estimate's error and the
// growth of other processes while the specs run.
const (
	ResidentShare = 0.8
	StreamedShare = 0.9
)

// Available is the memory this process can still take, and where the
// figure came from.
type Available struct {
	Bytes  int64
	Source string // for example "MemAvailable 20.1 GiB; cgroup v1 limit unlimited"
}

// AvailableMemory reads the memory available to this process: the least of
// /proc/meminfo's MemAvailable and the room left under the cgroup's limit
// (v2 memory.max less memory.current, v1 memory.limit_in_bytes less
// memory.usage_in_bytes). Where none of them can be read it is an error.
func AvailableMemory() (Available, error) {
	var parts []string
	best := int64(-1)
	take := func(bytes int64, what string) {
		parts = append(parts, what)
		if best < 0 || bytes < best {
			best = bytes
		}
	}
	if kb, err := procKB("/proc/meminfo", "MemAvailable"); err == nil {
		take(kb*1024, "MemAvailable "+units.Bytes(kb*1024))
	}
	if room, what, ok := cgroupRoom(); ok {
		take(room, what)
	}
	if best < 0 {
		return Available{}, fmt.Errorf("available memory: neither /proc/meminfo MemAvailable nor a cgroup memory limit could be read")
	}
	return Available{Bytes: best, Source: strings.Join(parts, "; ")}, nil
}

// procKB reads the "key: N kB" line of a /proc file such as /proc/meminfo
// or /proc/self/status, in kB.
func procKB(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s line", path, key)
}

// cgroupRoom is the room left under this process's cgroup memory limit,
// with a description; ok is false when no limit file can be read. An
// unlimited cgroup reports no room figure but says so.
func cgroupRoom() (room int64, what string, ok bool) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, "", false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.SplitN(line, ":", 3)
		if len(fields) != 3 {
			continue
		}
		switch {
		case fields[0] == "0" && fields[1] == "": // v2
			for _, dir := range []string{filepath.Join("/sys/fs/cgroup", fields[2]), "/sys/fs/cgroup"} {
				if r, w, ok := limitRoom(dir, "memory.max", "memory.current", "cgroup v2"); ok {
					return r, w, true
				}
			}
		case strings.Contains(","+fields[1]+",", ",memory,"): // v1
			for _, dir := range []string{filepath.Join("/sys/fs/cgroup/memory", fields[2]), "/sys/fs/cgroup/memory"} {
				if r, w, ok := limitRoom(dir, "memory.limit_in_bytes", "memory.usage_in_bytes", "cgroup v1"); ok {
					return r, w, true
				}
			}
		}
	}
	return 0, "", false
}

// limitRoom reads a cgroup limit and usage. A limit of "max" or one past
// 2^62 bytes (v1's unlimited) is no limit: room is then the largest int64.
func limitRoom(dir, limitFile, usageFile, kind string) (int64, string, bool) {
	limitText, err := os.ReadFile(filepath.Join(dir, limitFile))
	if err != nil {
		return 0, "", false
	}
	s := strings.TrimSpace(string(limitText))
	limit, err := strconv.ParseInt(s, 10, 64)
	if s == "max" || err == nil && limit >= 1<<62 {
		return 1<<63 - 1, kind + " limit unlimited", true
	}
	if err != nil {
		return 0, "", false
	}
	usageText, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		return 0, "", false
	}
	usage, err := strconv.ParseInt(strings.TrimSpace(string(usageText)), 10, 64)
	if err != nil {
		return 0, "", false
	}
	return max(limit-usage, 0), fmt.Sprintf("%s limit %s, %s in use", kind, units.Bytes(limit), units.Bytes(usage)), true
}

// Plan is how a model will be held, and why.
type Plan struct {
	Streamed  bool
	Estimate  int64 // peak estimate of the chosen mode
	Resident  int64 // peak estimate with every layer resident
	Stream    int64 // peak estimate layer-streamed
	Available Available
	Reason    string
}

// PlanFor chooses how to hold a model of cfg for the forward and
// gradient specs on a [B,T] batch: mode is ModeAuto, ModeResident or
// ModeStreamed (empty means auto). A preset's layers are regenerated from
// their init streams and a checkpoint's read from its mapped files, so
// either can be streamed. A model that cannot fit is an error naming the
// estimates, the available memory and what to do, so that its specs fail
// instead of the process running out of memory.
func PlanFor(name string, cfg model.Config, B, T int, mode string, avail Available) (Plan, error) {
	res, err := model.EstimateMemory(cfg, model.StorageAuto, B, T, false)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", name, err)
	}
	str, err := model.EstimateMemory(cfg, model.StorageAuto, B, T, true)
	if err != nil {
		return Plan{}, fmt.Errorf("%s: %w", name, err)
	}
	plan := Plan{Resident: res.Total(), Stream: str.Total(), Available: avail}
	estimates := fmt.Sprintf("estimated peak %s resident, %s layer-streamed; available %s (%s)",
		units.Bytes(plan.Resident), units.Bytes(plan.Stream), units.Bytes(avail.Bytes), avail.Source)
	share := func(f float64) int64 { return int64(f * float64(avail.Bytes)) }
	switch mode {
	case ModeResident:
		plan.Estimate = plan.Resident
		plan.Reason = "resident, as -memory-mode=resident asks"
		if plan.Resident > avail.Bytes {
			return plan, fmt.Errorf("%s does not fit resident: %s; use -memory-mode=auto or -memory-mode=streamed", name, estimates)
		}
	case ModeStreamed:
		plan.Streamed, plan.Estimate = true, plan.Stream
		plan.Reason = "layer-streamed, as -memory-mode=streamed asks"
		if plan.Stream > avail.Bytes {
			return plan, fmt.Errorf("%s does not fit even layer-streamed: %s; free memory, use a machine with at least %s, or pick a smaller config", name, estimates, units.Bytes(plan.Stream))
		}
	case ModeAuto, "":
		switch {
		case plan.Resident <= share(ResidentShare):
			plan.Estimate = plan.Resident
			plan.Reason = fmt.Sprintf("resident: its estimate is within %.0f%% of the available memory", 100*ResidentShare)
		case plan.Stream <= share(StreamedShare):
			plan.Streamed, plan.Estimate = true, plan.Stream
			plan.Reason = fmt.Sprintf("layer-streamed: the resident estimate is over %.0f%% of the available memory", 100*ResidentShare)
		default:
			return plan, fmt.Errorf("%s does not fit: %s; free memory, use a machine with at least %s, or pick a smaller config",
				name, estimates, units.Bytes(int64(float64(plan.Stream)/StreamedShare)))
		}
	default:
		return plan, fmt.Errorf("-memory-mode: expected auto, resident or streamed, got %q", mode)
	}
	plan.Reason += "; " + estimates
	return plan, nil
}

// PeakRSS reads this process's peak resident set size (VmHWM) on Linux.
func PeakRSS() (int64, error) {
	kb, err := procKB("/proc/self/status", "VmHWM")
	return kb * 1024, err
}
