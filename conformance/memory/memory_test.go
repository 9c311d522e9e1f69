package memory_test

import (
	"os"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/memory"
	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/model"
)

func TestPlanMemoryChoosesAndExplains(t *testing.T) {
	all, err := presets.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg := all["tritter-7b"].Config
	B, T := 2, 128
	res, _ := model.EstimateMemory(cfg, model.StorageAuto, B, T, false)
	str, _ := model.EstimateMemory(cfg, model.StorageAuto, B, T, true)
	plenty := memory.Available{Bytes: 2 * res.Total(), Source: "test"}
	some := memory.Available{Bytes: (res.Total() + str.Total()) / 2, Source: "test"}
	little := memory.Available{Bytes: str.Total() / 2, Source: "test"}

	for _, c := range []struct {
		mode     string
		avail    memory.Available
		streamed bool
		err      string // substring of the error, "" for none
	}{
		{"", plenty, false, ""},
		{"auto", some, true, ""},
		{"auto", little, false, "does not fit: estimated peak"},
		{"resident", plenty, false, ""},
		{"resident", little, false, "use -memory-mode=auto or -memory-mode=streamed"},
		{"streamed", plenty, true, ""},
		{"streamed", little, false, "does not fit even layer-streamed"},
		{"lazy", plenty, false, `-memory-mode: expected auto, resident or streamed, got "lazy"`},
	} {
		plan, err := memory.PlanFor("tritter-7b", cfg, B, T, c.mode, c.avail)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("mode %q, available %d: error %v, expected one containing %q", c.mode, c.avail.Bytes, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("mode %q, available %d: %v", c.mode, c.avail.Bytes, err)
			continue
		}
		if plan.Streamed != c.streamed {
			t.Errorf("mode %q, available %d: streamed %v, expected %v (%s)", c.mode, c.avail.Bytes, plan.Streamed, c.streamed, plan.Reason)
		}
		if !strings.Contains(plan.Reason, "estimated peak") {
			t.Errorf("mode %q: reason %q does not give the estimates", c.mode, plan.Reason)
		}
	}
}

func TestAvailableMemoryReadsThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc/meminfo")
	}
	avail, err := memory.AvailableMemory()
	if err != nil {
		t.Fatal(err)
	}
	if avail.Bytes <= 0 || !strings.Contains(avail.Source, "MemAvailable") {
		t.Errorf("AvailableMemory() = %+v", avail)
	}
}
