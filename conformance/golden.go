package conformance

import (
	"fmt"
	"os"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
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
	return numerics.CaseChecks(c.Case, numerics.ModelTarget)
}

// Results evaluates every check of the case on the run's compute path
// (-golden-compute), once per suite process, and records them for the
// numerics report: the specs of every area share one evaluation, so each
// can say where the case's divergence starts.
func (c *GoldenCase) Results() ([]numerics.Result, error) {
	c.h.mu.Lock()
	e, ok := c.h.evaluations[c.Case.Path]
	if !ok {
		e = &evaluation{}
		c.h.evaluations[c.Case.Path] = e
	}
	c.h.mu.Unlock()
	e.once.Do(func() {
		e.results, e.err = numerics.Evaluate(c.Case, numerics.ModelTarget, c.Checks(), c.h.compute)
		if e.err == nil {
			c.h.mu.Lock()
			c.h.records = append(c.h.records, numerics.Record(c.Case, e.results))
			c.h.mu.Unlock()
		}
	})
	return e.results, e.err
}

// ExpectCheck fails the spec when check i of the case failed, saying where
// the case's divergence starts.
func (c *GoldenCase) ExpectCheck(i int) {
	GinkgoHelper()
	results, err := c.Results()
	Expect(err).NotTo(HaveOccurred(), "building the model from %s", c.Case.Path)
	r := results[i]
	if r.Passed() {
		return
	}
	msg := r.String()
	if first := numerics.FirstFailure(results); first != nil {
		if first.Check.Name == r.Check.Name {
			msg += "\n(divergence starts here: this is the case's first failing check in computation order)"
		} else {
			msg += "\n(divergence starts earlier, at: " + first.String() + ")"
		}
	}
	Fail(msg)
}

// evaluation is one case's results, computed once.
type evaluation struct {
	once    sync.Once
	results []numerics.Result
	err     error
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
// checks, or the others.
func describeChecks(c *GoldenCase, gradients bool) {
	for i, check := range c.Checks() {
		if check.IsGradient() == gradients {
			It(check.Name, func() { c.ExpectCheck(i) })
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

// writeNumerics writes the numerics report of the cases this suite
// process evaluated, if any, as numerics-<suite>.json and its pictures.
func (h *Harness) writeNumerics(dir, suite string) {
	h.mu.Lock()
	cases := append([]numerics.CaseRecord(nil), h.records...)
	h.mu.Unlock()
	if len(cases) == 0 {
		return
	}
	if err := report.WriteNumerics(dir, suiteSlug(suite), cases); err != nil {
		fmt.Fprintf(os.Stderr, "numerics report: %v\n", err)
	}
}

// suiteSlug names a suite in file names: "Forward Suite" → "forward".
func suiteSlug(suite string) string {
	return strings.ToLower(strings.Join(strings.Fields(strings.TrimSuffix(suite, " Suite")), "-"))
}
