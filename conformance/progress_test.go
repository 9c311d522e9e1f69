package conformance

import (
	"strings"
	"testing"
	"time"
)

func TestStepWatchPrintsProgressThenStacksWhenStuck(t *testing.T) {
	var out strings.Builder
	w := newStepWatch(&out, 10*time.Millisecond, 45*time.Millisecond)
	key := stepKey([]string{"suite:forward", "config:tiny-mha-tied"}, "forward [2,128]")
	w.finished(key, time.Hour)
	stop := w.watch("Forward tiny-mha-tied is deterministic", "forward [2,128]", key, time.Now())
	time.Sleep(70 * time.Millisecond)
	stop()
	got := out.String()
	if n := strings.Count(got, "Forward tiny-mha-tied is deterministic\n"); n != 1 {
		t.Errorf("spec named %d times, expected once:\n%s", n, got)
	}
	if n := strings.Count(got, "  … forward [2,128]: "); n < 2 {
		t.Errorf("%d progress lines, expected at least 2:\n%s", n, got)
	}
	for _, want := range []string{"left", "presumed stuck", "goroutine "} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "presumed stuck"); n != 1 {
		t.Errorf("stacks printed %d times, expected once", n)
	}
	printed := out.Len()
	time.Sleep(30 * time.Millisecond)
	if out.Len() != printed {
		t.Errorf("the watch printed after stop returned")
	}
}

func TestStepWatchIsSilentForQuickSteps(t *testing.T) {
	var out strings.Builder
	w := newStepWatch(&out, time.Hour, time.Hour)
	w.watch("spec", "step", "step", time.Now())()
	if out.Len() != 0 {
		t.Errorf("a quick step printed %q", out.String())
	}
}

func TestStepKeySeparatesConfigs(t *testing.T) {
	if a, b := stepKey([]string{"config:tiny-mha-tied"}, "forward [2,128]"), stepKey([]string{"config:bitnet-b1.58-2b-4t", "full-scale"}, "forward [2,128]"); a == b {
		t.Errorf("two configs share the key %q", a)
	}
	if got := stepKey(nil, "forward [2,128]"); got != "forward [2,128]" {
		t.Errorf("stepKey without a config label = %q, expected the step text", got)
	}
}
