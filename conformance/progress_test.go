package conformance

import (
	"strings"
	"testing"
	"time"
)

// waitFor polls the watch's output until ok accepts it, for at most 10 s,
// so that a loaded machine only slows the test down.
func waitFor(t *testing.T, w *stepWatch, out *strings.Builder, ok func(string) bool) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		w.mu.Lock()
		got := out.String()
		w.mu.Unlock()
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("output after 10 s:\n%s", got)
		}
	}
}

func TestStepWatchPrintsProgressThenStacksWhenStuck(t *testing.T) {
	var out strings.Builder
	w := newStepWatch(&out, 10*time.Millisecond, 45*time.Millisecond)
	key := stepKey([]string{"suite:forward", "config:tiny-mha-tied"}, "forward [2,128]")
	w.finished(key, time.Hour)
	stop := w.watch("Forward tiny-mha-tied is deterministic", "forward [2,128]", key, time.Now())
	waitFor(t, w, &out, func(got string) bool {
		return strings.Count(got, "  … forward [2,128]: ") >= 3 && strings.Contains(got, "presumed stuck")
	})
	stop()
	got := out.String()
	if n := strings.Count(got, "Forward tiny-mha-tied is deterministic\n"); n != 1 {
		t.Errorf("spec named %d times, expected once:\n%s", n, got)
	}
	for _, want := range []string{"left", "goroutine "} {
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

func TestStepWatchShowsAdvance(t *testing.T) {
	var out strings.Builder
	w := newStepWatch(&out, 10*time.Millisecond, time.Hour)
	stop := w.watch("Gradient flow tiny-mha-tied", "forward and backward [2,128]", "key", time.Now())
	time.Sleep(5 * time.Millisecond)
	w.advance(6, 30, "layers")
	waitFor(t, w, &out, func(got string) bool { return strings.Contains(got, "6/30 layers, about ") })
	stop()
	w.advance(7, 30, "layers") // outside any step: ignored
	if w.running != nil {
		t.Errorf("a step is still running after stop")
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
