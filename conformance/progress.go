package conformance

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
)

// A step that runs longer than progressEvery prints a progress line — the
// spec, the step, the time so far and, when the same step has run before on
// the same config in this suite process, the time left — and another every
// progressEvery until it ends. Quick steps print nothing. A step still running after stuckAfter
// is presumed stuck and prints every goroutine's stack, once. The longest
// step measured, the 7B forward and backward, takes 84 s on an idle machine.
const (
	progressEvery = 30 * time.Second
	stuckAfter    = 10 * time.Minute
)

// Step narrates a long step of a spec (By), with its duration in the spec's
// output and progress lines while it runs (see progressEvery).
func Step(text string, body func()) {
	GinkgoHelper()
	start := time.Now()
	spec := CurrentSpecReport()
	key := stepKey(spec.Labels(), text)
	stop := steps.watch(spec.FullText(), text, key, start)
	defer stop()
	By(text, body)
	elapsed := time.Since(start)
	steps.finished(key, elapsed)
	fmt.Fprintf(GinkgoWriter, "  %s: %.2fs\n", text, elapsed.Seconds())
}

// stepKey names a step for the estimate of its time left: its text and the
// config it runs on, as the spec's config:<name> label says. Steps of
// different configs share texts such as "forward [2,128]".
func stepKey(labels []string, text string) string {
	for _, label := range labels {
		if strings.HasPrefix(label, "config:") {
			return label + " " + text
		}
	}
	return text
}

// steps prints the progress lines of this suite process to the terminal.
// Ginkgo shows stdout as it is written when specs run serially.
var steps = newStepWatch(os.Stdout, progressEvery, stuckAfter)

// stepWatch times steps and prints their progress lines.
type stepWatch struct {
	out        io.Writer
	every      time.Duration
	stuckAfter time.Duration

	mu       sync.Mutex
	took     map[string]time.Duration // stepKey → how long the step took last time
	lastSpec string                   // the spec of the last line printed
}

func newStepWatch(out io.Writer, every, stuckAfter time.Duration) *stepWatch {
	return &stepWatch{out: out, every: every, stuckAfter: stuckAfter, took: map[string]time.Duration{}}
}

// watch prints progress lines for a step until stop is called; stop
// returns once nothing more will be printed.
func (w *stepWatch) watch(spec, step, key string, start time.Time) (stop func()) {
	w.mu.Lock()
	previous, ranBefore := w.took[key]
	w.mu.Unlock()
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		ticker := time.NewTicker(w.every)
		defer ticker.Stop()
		stuck := time.NewTimer(w.stuckAfter)
		defer stuck.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-ticker.C:
				elapsed := now.Sub(start).Round(time.Second)
				line := fmt.Sprintf("%s: %s", step, elapsed)
				if ranBefore && previous > elapsed {
					line += fmt.Sprintf(", about %s left", (previous - elapsed).Round(time.Second))
				}
				w.print(spec, line)
			case <-stuck.C:
				w.print(spec, fmt.Sprintf("%s: no end after %s, presumed stuck; goroutine stacks:\n%s", step, w.stuckAfter, allStacks()))
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// finished records how long a step took, for the next run's estimate.
func (w *stepWatch) finished(key string, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.took[key] = took
}

// print writes one progress line. Ginkgo's progress dots have no newline,
// so the first line of a spec starts on a new one.
func (w *stepWatch) print(spec, line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if spec != w.lastSpec {
		fmt.Fprintf(w.out, "\n%s\n", spec)
		w.lastSpec = spec
	}
	fmt.Fprintf(w.out, "  … %s\n", line)
}

func allStacks() []byte {
	buf := make([]byte, 1<<20)
	return buf[:runtime.Stack(buf, true)]
}
