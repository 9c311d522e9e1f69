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

// A step that runs longer than progressEvery prints a progress line and
// another every progressEvery until it ends: the step, the time so far, how
// far along it is when the step reports it (Advance), and the time left,
// estimated from that rate or else from the same step's last run on the same
// config in this suite process. Quick steps print nothing. A step that has
// neither ended nor advanced for stuckAfter is presumed stuck and prints
// every goroutine's stack, once. The longest step measured, the 7B forward
// and backward, takes 84 s on an idle machine.
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

// Advance tells the running step how far it has got, for example
// Advance(120, 273, "parameter gradients"); its progress lines then say
// "120/273 parameter gradients" and estimate the time left from the rate so
// far. It may be called from any goroutine, and does nothing outside a step.
func Advance(done, total int, unit string) { steps.advance(done, total, unit) }

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
	running  *runningStep             // the innermost running step, or nil
	lastSpec string                   // the spec of the last line printed
}

// runningStep is the state of one step between watch and stop.
type runningStep struct {
	spec, text string
	start      time.Time
	previous   time.Duration // the last run's duration, if ranBefore
	ranBefore  bool
	outer      *runningStep // the step this one runs inside, if any

	done, total int
	unit        string
	advanced    time.Time // the last Advance, or start
	dumped      bool      // the stacks were printed
}

func newStepWatch(out io.Writer, every, stuckAfter time.Duration) *stepWatch {
	return &stepWatch{out: out, every: every, stuckAfter: stuckAfter, took: map[string]time.Duration{}}
}

// watch prints progress lines for a step until stop is called; stop
// returns once nothing more will be printed for it.
func (w *stepWatch) watch(spec, text, key string, start time.Time) (stop func()) {
	w.mu.Lock()
	s := &runningStep{spec: spec, text: text, start: start, advanced: start, outer: w.running}
	s.previous, s.ranBefore = w.took[key]
	w.running = s
	w.mu.Unlock()
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		ticker := time.NewTicker(w.every)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-ticker.C:
				w.report(s, now)
			}
		}
	}()
	return func() {
		close(done)
		<-exited
		w.mu.Lock()
		w.running = s.outer
		w.mu.Unlock()
	}
}

// report prints a step's progress line, and its stacks once when it has not
// advanced for stuckAfter.
func (w *stepWatch) report(s *runningStep, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	elapsed := now.Sub(s.start).Round(time.Second)
	line := fmt.Sprintf("%s: %s", s.text, elapsed)
	if s.total > 0 {
		line += fmt.Sprintf(", %d/%d %s", s.done, s.total, s.unit)
	}
	switch {
	case s.done > 0 && s.total > s.done:
		perUnit := s.advanced.Sub(s.start) / time.Duration(s.done)
		left := perUnit*time.Duration(s.total-s.done) - now.Sub(s.advanced)
		if left > 0 {
			line += fmt.Sprintf(", about %s left", left.Round(time.Second))
		}
	case s.total == 0 && s.ranBefore && s.previous > elapsed:
		line += fmt.Sprintf(", about %s left", (s.previous - elapsed).Round(time.Second))
	}
	if !s.dumped && now.Sub(s.advanced) >= w.stuckAfter {
		s.dumped = true
		line += fmt.Sprintf("; no progress for %s, presumed stuck; goroutine stacks:\n%s", w.stuckAfter, allStacks())
	}
	if s.spec != w.lastSpec {
		// Ginkgo's progress dots have no newline.
		fmt.Fprintf(w.out, "\n%s\n", s.spec)
		w.lastSpec = s.spec
	}
	fmt.Fprintf(w.out, "  … %s\n", line)
}

// advance records how far the innermost running step has got.
func (w *stepWatch) advance(done, total int, unit string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running == nil {
		return
	}
	w.running.done, w.running.total, w.running.unit = done, total, unit
	w.running.advanced = time.Now()
}

// finished records how long a step took, for the next run's estimate.
func (w *stepWatch) finished(key string, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.took[key] = took
}

func allStacks() []byte {
	buf := make([]byte, 1<<20)
	return buf[:runtime.Stack(buf, true)]
}
