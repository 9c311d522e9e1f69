package conformance

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tritter-ai/conformance/conformance/memory"
	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/internal/units"
	"github.com/tritter-ai/conformance/model"
)

// SeedParamBand is the seed script's "~2B parameters" check for 2B-4T.
var SeedParamBand = [2]int64{1_500_000_000, 2_500_000_000}

// Instantiation are the instantiation specs: every subject builds, its
// parameter count equals the analytic count, its tensor inventory equals
// the HF checkpoint inventory, and its memory is reported.
var Instantiation = func() *Specs {
	var s Specs
	s.DescribeSubject("Instantiation", describeInstantiation, SuiteLabel("instantiation"))
	return &s
}()

func describeInstantiation(s *Subject) {
	var m *model.Model
	BeforeEach(func() { m = s.MustModel() })

	It("builds the model", func() {
		Expect(m.Config()).To(Equal(s.Config))
		s.Report("parameter memory", units.Bytes(m.MemoryBytes()))
		if rss, err := memory.PeakRSS(); err == nil {
			s.Report("peak RSS of this suite process", units.Bytes(rss))
		}
	})

	It("has exactly the analytic parameter count", func() {
		got, want := m.ParamCount(), s.Config.ParamCount()
		s.Report("parameters", units.Thousands(got))
		Expect(got).To(Equal(want), "%s: instantiated %s parameters, analytic count %s", s.Name, units.Thousands(got), units.Thousands(want))
		if s.Name == presets.ReferenceName {
			Expect(got).To(BeNumerically(">=", SeedParamBand[0]), "the seed's ~2B band")
			Expect(got).To(BeNumerically("<=", SeedParamBand[1]), "the seed's ~2B band")
		}
	})

	It("has the HF checkpoint tensor inventory, names and shapes", func() {
		Expect(InventoryDiff(m, s.Config)).To(BeEmpty())
	})
}

// InventoryDiff lists every difference between a model's parameters and the
// config's HF inventory: missing, unexpected, misplaced or mis-shaped tensors.
func InventoryDiff(m *model.Model, cfg model.Config) []string {
	var diffs []string
	want := cfg.Inventory()
	params := m.Params()
	got := map[string][]int{}
	for i, p := range params {
		got[p.Name()] = p.Shape()
		if i < len(want) && want[i].Name != p.Name() {
			diffs = append(diffs, fmt.Sprintf("parameter %d: %s, expected %s (HF order)", i, p.Name(), want[i].Name))
		}
	}
	expected := map[string]bool{}
	for _, t := range want {
		expected[t.Name] = true
		shape, ok := got[t.Name]
		if !ok {
			diffs = append(diffs, t.Name+": missing")
			continue
		}
		if fmt.Sprint(shape) != fmt.Sprint(t.Shape) {
			diffs = append(diffs, fmt.Sprintf("%s: shape %v, expected %v", t.Name, shape, t.Shape))
		}
	}
	for _, p := range params {
		if !expected[p.Name()] {
			diffs = append(diffs, p.Name()+": unexpected tensor")
		}
	}
	return diffs
}
