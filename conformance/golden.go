package conformance

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/conformance/report"
	"github.com/tritter-ai/conformance/golden"
)

// GoldenCase is one golden case file that golden specs run on.
type GoldenCase struct {
	Name string // folder and file: "cases/bitlinear-edge"
	Case *golden.Case
	h    *Harness
}

// Checks lists every check of the case against the Go model, in
// computation order.
func (c *GoldenCase) Checks() []numerics.Check {
	return c.evaluation().checks
}

// Want marks check i as one this suite process runs. The registration
// functions call it for every spec they register (and a team's spec that
// registers its own It per check should too), so that Results evaluates
// exactly the checks the process's specs ask for: the forward suite never
// pays for end-to-end gradients and the gradient suite never for the
// end-to-end forward checks. Each evaluation is the case's one evaluation
// in the run.
func (c *GoldenCase) Want(i int) {
	e := c.evaluation()
	c.h.mu.Lock()
	e.wanted[i] = true
	c.h.mu.Unlock()
}

// Results evaluates the wanted checks of the case on the run's compute
// path (-golden-compute), once per suite process, and records them for the
// numerics report: the specs of every area share one evaluation, so each
// can say where the case's divergence starts. A check nobody wanted has a
// Result whose Err says so.
func (c *GoldenCase) Results() ([]numerics.Result, error) {
	e := c.evaluation()
	e.once.Do(func() {
		c.h.mu.Lock()
		var subset []numerics.Check
		var at []int
		for i, check := range e.checks {
			if e.wanted[i] {
				subset = append(subset, check)
				at = append(at, i)
			}
		}
		c.h.mu.Unlock()
		var results []numerics.Result
		results, e.err = numerics.Evaluate(c.Case, numerics.ModelTarget, subset, c.h.compute)
		if e.err != nil {
			return
		}
		e.results = make([]numerics.Result, len(e.checks))
		for i, check := range e.checks {
			e.results[i] = numerics.Result{Check: check, Err: errNotEvaluated}
		}
		for k, i := range at {
			e.results[i] = results[k]
		}
		e.first = numerics.FirstFailure(results)
		c.h.mu.Lock()
		c.h.records = append(c.h.records, numerics.Record(c.Case, results))
		c.h.mu.Unlock()
	})
	return e.results, e.err
}

// errNotEvaluated is the Err of a check no spec of the process wanted.
var errNotEvaluated = errors.New("not evaluated in this suite process (no spec wanted it)")

// ExpectCheck fails the spec when check i of the case failed, saying where
// the case's divergence starts. A check that was not wanted is evaluated
// on its own.
func (c *GoldenCase) ExpectCheck(i int) {
	GinkgoHelper()
	results, err := c.Results()
	Expect(err).NotTo(HaveOccurred(), "building the model from %s", c.Case.Path)
	r := results[i]
	if errors.Is(r.Err, errNotEvaluated) {
		alone, err := numerics.Evaluate(c.Case, numerics.ModelTarget, c.Checks()[i:i+1], c.h.compute)
		Expect(err).NotTo(HaveOccurred(), "building the model from %s", c.Case.Path)
		r = alone[0]
	}
	if r.Err == nil && r.Measure.Uninformative != "" {
		Skip(r.Measure.Uninformative)
	}
	if r.Passed() {
		return
	}
	msg := r.String()
	if first := c.evaluation().first; first != nil {
		if first.Check.Name == r.Check.Name {
			msg += "\n(divergence starts here: this is the case's first failing check in computation order)"
		} else {
			msg += "\n(divergence starts earlier, at: " + first.String() + ")"
		}
	}
	Fail(msg)
}

// evaluation is one case's checks and results in a suite process,
// computed once.
type evaluation struct {
	checks  []numerics.Check
	wanted  []bool
	once    sync.Once
	results []numerics.Result
	first   *numerics.Result // the first evaluated check that failed, in computation order
	err     error
}

// evaluation returns the case's evaluation, shared by every GoldenCase of
// the same file in the harness.
func (c *GoldenCase) evaluation() *evaluation {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	e, ok := c.h.evaluations[c.Case.Path]
	if !ok {
		checks := numerics.CaseChecks(c.Case, numerics.ModelTarget)
		e = &evaluation{checks: checks, wanted: make([]bool, len(checks))}
		c.h.evaluations[c.Case.Path] = e
	}
	return e
}

// goldenFiles loads the committed cases and every -golden-dir file, once.
func (h *Harness) goldenFiles() ([]golden.Loaded, error) {
	h.goldenOnce.Do(func() {
		h.goldenCases = golden.LoadCommitted()
		extra, err := golden.LoadAll(h.config.GoldenDirs...)
		h.goldenCases, h.goldenErr = append(h.goldenCases, extra...), err
	})
	return h.goldenCases, h.goldenErr
}

// describeGoldenCases calls body once per golden case, inside
// Describe(case name). A case that failed to load becomes one failing spec
// naming the file and the problem.
func (h *Harness) describeGoldenCases(body func(c *GoldenCase)) {
	files, err := h.goldenFiles()
	if err != nil {
		It("discovers the golden cases", func() { Fail(err.Error()) })
		return
	}
	if len(files) == 0 {
		It("finds golden cases", func() { Fail("no golden case files, committed or in -golden-dir") })
		return
	}
	for _, f := range files {
		name := numerics.CaseName(f.Path)
		if f.Err != nil {
			It("loads "+name, func() { Fail(f.Err.Error()) })
			continue
		}
		c := &GoldenCase{Name: name, Case: f.Case, h: h}
		Describe(name, func() { body(c) })
	}
}

// describeChecks registers one spec per check of a case: the gradient
// checks, or the others. The gradient specs also want the forward op
// checks, which cost no pass of their own (they read the teacher-forced
// pass the backward op checks need), so that a gradient failure can say
// when the divergence starts earlier, in the forward pass.
func describeChecks(c *GoldenCase, gradients bool) {
	for i, check := range c.Checks() {
		if check.IsGradient() == gradients {
			c.Want(i)
			It(check.Name, func() { c.ExpectCheck(i) })
		} else if gradients && check.Stage == numerics.StageForward {
			c.Want(i)
		}
	}
}

// GoldenNumerics are the numerics specs of the forward suite: one container
// per golden case, with one spec per forward op check and per forward
// end-to-end check.
var GoldenNumerics = func() *Specs {
	var s Specs
	s.DescribeRun("Golden numerics", describeManifest, SuiteLabel("golden"))
	s.DescribeGoldenCases("Golden numerics", func(c *GoldenCase) { describeChecks(c, false) }, SuiteLabel("golden"))
	return &s
}()

// describeManifest checks the committed cases against their SHA-256
// manifest first, so that a changed committed file fails as "golden file
// changed", not as a model bug at some op.
func describeManifest(*Harness) {
	It("has committed golden files identical to golden/cases/"+golden.ManifestName, Label(LabelGolden, LabelCostConfig), func() {
		problems := golden.CheckManifest(golden.Committed(), golden.CommittedManifest())
		Expect(problems).To(BeEmpty(), "%d committed golden files differ from their manifest (regenerate with make golden, or restore them):\n%s", len(problems), strings.Join(problems, "\n"))
	})
}

// writeNumerics adds the records of the cases this suite process
// evaluated, if any, to the run's numerics report in dir (see
// report.WriteNumerics): one record per case, shared by the suites of the
// run.
func (h *Harness) writeNumerics(dir string, r Report) {
	h.mu.Lock()
	cases := append([]numerics.CaseRecord(nil), h.records...)
	h.mu.Unlock()
	if len(cases) == 0 {
		return
	}
	if err := report.WriteNumerics(dir, runKey(r.SuiteConfig), suiteSlug(r.SuiteDescription), cases); err != nil {
		fmt.Fprintf(os.Stderr, "numerics report: %v\n", err)
	}
}

// runKey identifies the ginkgo invocation a suite belongs to: the suites
// of one run are children of one ginkgo or go process and share the random
// seed and the filters.
func runKey(sc types.SuiteConfig) report.RunKey {
	var filters []string
	add := func(flag string, values ...string) {
		for _, v := range values {
			if v != "" {
				filters = append(filters, fmt.Sprintf("%s=%q", flag, v))
			}
		}
	}
	add("--focus", sc.FocusStrings...)
	add("--skip", sc.SkipStrings...)
	add("--focus-file", sc.FocusFiles...)
	add("--skip-file", sc.SkipFiles...)
	add("--label-filter", sc.LabelFilter)
	return report.RunKey{Parent: os.Getppid(), Seed: sc.RandomSeed, Filter: strings.Join(filters, " ")}
}

// suiteSlug names a suite in file names: "Forward Suite" → "forward".
func suiteSlug(suite string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.TrimSuffix(suite, " Suite")), "-"))
}
