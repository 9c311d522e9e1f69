// Package report turns a run's results into what people and CI systems
// read: the numerics report (JSON and pictures), each suite's result line,
// the whole-run summary with its verdict, and the JUnit file. It knows
// Ginkgo's report types but not its DSL.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/tritter-ai/conformance/conformance/numerics"
)

// The numerics report: reports/numerics-<suite>.json with every check's
// worst error/bound ratio, reports/numerics-<suite>.png with every case's
// ratios by op and layer on a log scale against the bound line, and one
// picture per failing case, reports/numerics-<suite>-<case>.png.

// Numerics is the JSON file of the numerics report.
type Numerics struct {
	Suite string                `json:"suite"`
	Cases []numerics.CaseRecord `json:"cases"`
	// WorstPassingRatio is the largest ratio of any passing check; the
	// bounds' margin on this run is 1/WorstPassingRatio.
	WorstPassingRatio float64 `json:"worst_passing_ratio"`
	Failed            int     `json:"failed_checks"`
	// Stages summarises the ratios of each stage's checks.
	Stages map[string]RatioSummary `json:"stages"`
}

// RatioSummary is the distribution of the error/bound ratios of a set of
// checks.
type RatioSummary struct {
	Checks int     `json:"checks"`
	Median float64 `json:"median"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
}

// summarise computes the quantiles with gonum's stat package.
func summarise(ratios []float64) RatioSummary {
	sort.Float64s(ratios)
	return RatioSummary{
		Checks: len(ratios),
		Median: stat.Quantile(0.5, stat.Empirical, ratios, nil),
		P99:    stat.Quantile(0.99, stat.Empirical, ratios, nil),
		Max:    ratios[len(ratios)-1],
	}
}

// WriteNumerics writes the JSON report and the pictures into dir.
func WriteNumerics(dir, suite string, cases []numerics.CaseRecord) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Case < cases[j].Case })
	rep := Numerics{Suite: suite, Cases: cases, Stages: map[string]RatioSummary{}}
	byStage := map[string][]float64{}
	for _, c := range cases {
		for _, ch := range c.Checks {
			if ch.Err == "" && !math.IsNaN(ch.Ratio) {
				byStage[ch.Stage] = append(byStage[ch.Stage], ch.Ratio)
			}
			if ch.Passed {
				rep.WorstPassingRatio = math.Max(rep.WorstPassingRatio, ch.Ratio)
			} else {
				rep.Failed++
			}
		}
	}
	for stage, ratios := range byStage {
		rep.Stages[stage] = summarise(ratios)
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	base := filepath.Join(dir, "numerics-"+suite)
	if err := os.WriteFile(base+".json", data, 0o644); err != nil {
		return err
	}
	if err := plotRatios(base+".png", fmt.Sprintf("%s: error/bound of every check, %d cases", suite, len(cases)), cases); err != nil {
		return err
	}
	for _, c := range cases {
		if c.FirstFailure == "" {
			continue
		}
		name := base + "-" + fileSafe.ReplaceAllString(c.Case, "_") + ".png"
		if err := plotRatios(name, c.Case+": divergence starts at "+c.FirstFailure, []numerics.CaseRecord{c}); err != nil {
			return err
		}
	}
	return nil
}

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// layerNumbers finds the layer index in tensor names.
var layerNumbers = regexp.MustCompile(`(trace|layers)\.\d+\.|hidden\.\d+`)

// slotLabel names a check's position on the x axis: its stage and tensor
// with the layer index removed, so every layer's check of one op shares a
// slot and the layers are told apart by colour.
func slotLabel(ch numerics.CheckRecord) string {
	t := layerNumbers.ReplaceAllStringFunc(ch.Tensor, func(m string) string {
		if strings.HasPrefix(m, "hidden") {
			return "hidden.i"
		}
		return ""
	})
	t = strings.NewReplacer("model.", "", "self_attn.", "", "mlp.", "").Replace(t)
	if t == "hidden.i" && ch.Layer >= 0 && ch.Stage == numerics.StageForward.String() {
		t = "hidden.i+1" // a layer's output, not the embedding
	}
	if ch.Stage == numerics.StageEndToEnd.String() {
		return "e2e " + t
	}
	return t
}

// plotRatios draws one point per check: x is the op slot in computation
// order, y the error/bound ratio (log scale, clamped to [1e-6, 1e6]), the
// colour the layer; the line at 1 is the bound.
func plotRatios(path, title string, cases []numerics.CaseRecord) error {
	var slots []string
	index := map[string]int{}
	for _, c := range cases {
		for _, ch := range c.Checks {
			l := slotLabel(ch)
			if _, ok := index[l]; !ok {
				index[l] = len(slots)
				slots = append(slots, l)
			}
		}
	}
	byLayer := map[int]plotter.XYs{}
	maxLayer := -1
	for _, c := range cases {
		for _, ch := range c.Checks {
			y := math.Min(1e6, math.Max(1e-6, ch.Ratio))
			if ch.Err != "" || math.IsNaN(ch.Ratio) {
				y = 1e6
			}
			x := float64(index[slotLabel(ch)]) + 0.05*float64(ch.Layer)
			byLayer[ch.Layer] = append(byLayer[ch.Layer], plotter.XY{X: x, Y: y})
			maxLayer = max(maxLayer, ch.Layer)
		}
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "error / bound"
	p.Y.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for e := -6; e <= 6; e++ {
		ticks = append(ticks, plot.Tick{Value: math.Pow(10, float64(e)), Label: fmt.Sprintf("1e%d", e)})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min, p.Y.Max = 1e-6, 1e6
	p.NominalX(slots...)
	p.X.Tick.Label.Rotation = math.Pi / 2
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	bound, err := plotter.NewLine(plotter.XYs{{X: -1, Y: 1}, {X: float64(len(slots)), Y: 1}})
	if err != nil {
		return err
	}
	bound.Color = plotutil.Color(0)
	bound.Width = vg.Points(1.5)
	p.Add(bound)
	p.Legend.Add("bound", bound)
	for layer := -1; layer <= maxLayer; layer++ {
		pts, ok := byLayer[layer]
		if !ok {
			continue
		}
		s, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		s.GlyphStyle.Color = plotutil.Color(layer + 2)
		s.GlyphStyle.Radius = vg.Points(2)
		s.GlyphStyle.Shape = plotutil.Shape(layer + 1)
		p.Add(s)
		name := "model-level"
		if layer >= 0 {
			name = fmt.Sprintf("layer %d", layer)
		}
		p.Legend.Add(name, s)
	}
	p.Legend.Top = true
	width := vg.Length(math.Max(8, 0.16*float64(len(slots)))) * vg.Inch
	return p.Save(width, 7*vg.Inch, path)
}
