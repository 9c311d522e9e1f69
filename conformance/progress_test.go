package conformance

import (
	"strings"
	"testing"
	"time"
)

func TestStepWatchPrintsProgressThenStacksWhenStuck(t *testing.T) {
	var out strings.Builder
	w := newStepWatch(&out, 10*time.Millisecond, 45*time.Millisecond)
	w.finished("forward [2,128]", time.Hour)
	stop := w.watch("Forward tiny-mha-tied is deterministic", "forward [2,128]", time.Now())
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
	w.watch("spec", "step", time.Now())()
	if out.Len() != 0 {
		t.Errorf("a quick step printed %q", out.String())
	}
}
