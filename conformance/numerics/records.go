package numerics

import (
	"math"
	"path/filepath"
	"strings"

	"github.com/tritter-ai/conformance/golden"
)

// CaseRecord is one golden case's results in the numerics report.
type CaseRecord struct {
	Case    string        `json:"case"`
	Path    string        `json:"path"`
	Version int           `json:"format_version"`
	Checks  []CheckRecord `json:"checks"`
	// FirstFailure names the first failing check in computation order.
	FirstFailure string `json:"first_failure,omitempty"`
}

// CheckRecord is one check's worst error/bound ratio.
type CheckRecord struct {
	Name string `json:"name"`
	// Order is the check's position in the case's computation order
	// (CaseChecks), so records of one case from two suites merge in order.
	Order int `json:"order"`
	// Class is the kind of bound the check is judged by (BoundClass).
	Class  string  `json:"class"`
	Layer  int     `json:"layer"`
	Op     string  `json:"op"`
	Tensor string  `json:"tensor"`
	Stage  string  `json:"stage"`
	Ratio  float64 `json:"ratio"`
	Index  []int   `json:"index,omitempty"`
	Error  float64 `json:"error"`
	Bound  float64 `json:"bound"`
	Passed bool    `json:"passed"`
	Err    string  `json:"err,omitempty"`
	// Uninformative says why the check could give no bound (see
	// Measurement.Uninformative); it then counts as passed.
	Uninformative string `json:"uninformative,omitempty"`
}

// Record is the numerics-report record of one case's results.
func Record(c *golden.Case, results []Result) CaseRecord {
	rec := CaseRecord{Case: CaseName(c.Path), Path: c.Path, Version: c.Version}
	for _, r := range results {
		cr := CheckRecord{Name: r.Check.Name, Order: r.Check.Order, Class: string(r.Check.Class()), Layer: r.Check.Layer, Op: r.Check.Op, Tensor: r.Check.Tensor, Stage: r.Check.Stage.String(),
			Ratio: jsonNumber(r.Measure.Ratio), Index: r.Measure.Index, Error: jsonNumber(r.Measure.Error), Bound: jsonNumber(r.Measure.Bound), Passed: r.Passed()}
		if r.Err != nil {
			cr.Err = r.Err.Error()
		}
		cr.Uninformative = r.Measure.Uninformative
		rec.Checks = append(rec.Checks, cr)
	}
	if f := FirstFailure(results); f != nil {
		rec.FirstFailure = f.Check.Name
	}
	return rec
}

// jsonNumber keeps a value JSON can hold: ±Inf becomes ±MaxFloat64 and NaN
// becomes MaxFloat64 (a NaN error is as bad as an infinite one).
func jsonNumber(v float64) float64 {
	switch {
	case math.IsNaN(v), math.IsInf(v, 1):
		return math.MaxFloat64
	case math.IsInf(v, -1):
		return -math.MaxFloat64
	}
	return v
}

// CaseName names a golden case by its folder and file: "cases/bitlinear-edge".
func CaseName(path string) string {
	dir := filepath.Base(filepath.Dir(path))
	return dir + "/" + strings.TrimSuffix(filepath.Base(path), ".safetensors")
}
