// Package report turns a run's results into what people and CI systems
// read: the numerics report (JSON and pictures), each suite's result line,
// the whole-run summary with its verdict, and the JUnit file. It knows
// Ginkgo's report types but not its DSL.
package report

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/internal/units"
)

// The numerics report of a run: reports/numerics.json with one record per
// golden case (the forward and gradient suites each add the checks they
// ran to the same record), reports/numerics.png with every check's worst
// error/bound ratio, and one picture per failing case,
// reports/numerics-<case>.png. A run with a Ginkgo filter (focus, skip,
// label filter) writes numerics-filtered.* instead, so it never replaces a
// full run's report.

// RunKey identifies the run a suite process belongs to: the suites of one
// ginkgo (or go test) invocation are children of the same process and
// share its random seed and its filters.
type RunKey struct {
	Parent int    `json:"parent_pid"` // the ginkgo or go process that ran the suites
	Seed   int64  `json:"seed"`
	Filter string `json:"filter,omitempty"` // the Ginkgo filters, empty for a full run
}

// Filtered reports whether the run left specs out on purpose.
func (k RunKey) Filtered() bool { return k.Filter != "" }

// Numerics is the JSON file of the numerics report.
type Numerics struct {
	Run    RunKey                `json:"run"`
	Suites []string              `json:"suites"` // the suites whose checks the records hold
	Cases  []numerics.CaseRecord `json:"cases"`
	// WorstPassingRatio is the largest ratio of any passing check; the
	// bounds' margin on this run is 1/WorstPassingRatio.
	WorstPassingRatio float64 `json:"worst_passing_ratio"`
	Failed            int     `json:"failed_checks"`
	// Stages summarises the ratios of each stage's checks.
	Stages map[string]RatioSummary `json:"stages"`
	// Headroom is, per bound class (numerics.BoundClass), how far the
	// largest error of a passing check stays below its bound.
	Headroom map[string]Headroom `json:"headroom"`
}

// Headroom is the margin of one bound class on a run: the bound over the
// largest error a passing check showed against it (1/MaxRatio). A large
// headroom means the class's bounds are loose for these cases.
type Headroom struct {
	Checks   int     `json:"checks"`
	MaxRatio float64 `json:"max_ratio"`
	Headroom float64 `json:"headroom"` // 0 when every passing check was exact
	Worst    string  `json:"worst"`    // case: check
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

// NumericsBase is the report's file name without extension in dir:
// "numerics", or "numerics-filtered" for a filtered run.
func NumericsBase(dir string, run RunKey) string {
	if run.Filtered() {
		return filepath.Join(dir, "numerics-filtered")
	}
	return filepath.Join(dir, "numerics")
}

// WriteNumerics adds one suite's case records to the run's report in dir
// and redraws its pictures. A report already there from the same run (same
// RunKey) keeps its other suites' checks: a case's record is the union of
// every suite's checks, by name, in computation order. A report from
// another run is replaced.
func WriteNumerics(dir string, run RunKey, suite string, cases []numerics.CaseRecord) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := NumericsBase(dir, run)
	rep := Numerics{Run: run}
	if old, err := readNumerics(base + ".json"); err == nil && old.Run == run {
		rep = old
	}
	rep.Cases = mergeCases(rep.Cases, cases)
	if !slices.Contains(rep.Suites, suite) {
		rep.Suites = append(rep.Suites, suite)
		sort.Strings(rep.Suites)
	}
	rep.tally()
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(base+".json", data); err != nil {
		return err
	}
	if err := plotRatios(base+".png", overviewTitle(rep), rep.Cases, false); err != nil {
		return err
	}
	for _, c := range rep.Cases {
		if c.FirstFailure == "" {
			continue
		}
		name := base + "-" + fileSafe.ReplaceAllString(c.Case, "_") + ".png"
		if err := plotRatios(name, c.Case+": divergence starts at "+c.FirstFailure, []numerics.CaseRecord{c}, true); err != nil {
			return err
		}
	}
	return nil
}

func readNumerics(path string) (Numerics, error) {
	var rep Numerics
	data, err := os.ReadFile(path)
	if err != nil {
		return rep, err
	}
	err = json.Unmarshal(data, &rep)
	return rep, err
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder, so a reader never sees half a report.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}

// mergeCases adds the records of add to those of have: a case in both gets
// the union of their checks by name (add's result wins), in computation
// order, and its first failure recomputed.
func mergeCases(have, add []numerics.CaseRecord) []numerics.CaseRecord {
	byPath := map[string]int{}
	out := append([]numerics.CaseRecord(nil), have...)
	for i, c := range out {
		byPath[c.Path] = i
	}
	for _, c := range add {
		i, ok := byPath[c.Path]
		if !ok {
			byPath[c.Path] = len(out)
			out = append(out, c)
			continue
		}
		checks := map[string]numerics.CheckRecord{}
		for _, ch := range out[i].Checks {
			checks[ch.Name] = ch
		}
		for _, ch := range c.Checks {
			checks[ch.Name] = ch
		}
		merged := c
		merged.Checks = nil
		for _, ch := range checks {
			merged.Checks = append(merged.Checks, ch)
		}
		sort.Slice(merged.Checks, func(a, b int) bool { return merged.Checks[a].Order < merged.Checks[b].Order })
		merged.FirstFailure = ""
		for _, ch := range merged.Checks {
			if !ch.Passed {
				merged.FirstFailure = ch.Name
				break
			}
		}
		out[i] = merged
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Case < out[j].Case })
	return out
}

// tally recomputes the summary fields from the records.
func (rep *Numerics) tally() {
	rep.WorstPassingRatio, rep.Failed, rep.Stages, rep.Headroom = 0, 0, map[string]RatioSummary{}, map[string]Headroom{}
	byStage := map[string][]float64{}
	for _, c := range rep.Cases {
		for _, ch := range c.Checks {
			if ch.Passed && ch.Class != "" {
				h := rep.Headroom[ch.Class]
				h.Checks++
				if ch.Ratio > h.MaxRatio || h.Worst == "" {
					h.MaxRatio, h.Worst = ch.Ratio, c.Case+": "+ch.Name
				}
				rep.Headroom[ch.Class] = h
			}
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
	for class, h := range rep.Headroom {
		if h.MaxRatio > 0 { // else 0: every passing check was exact
			h.Headroom = 1 / h.MaxRatio
			rep.Headroom[class] = h
		}
	}
}

func overviewTitle(rep Numerics) string {
	failing := 0
	for _, c := range rep.Cases {
		if c.FirstFailure != "" {
			failing++
		}
	}
	title := fmt.Sprintf("Golden numerics (%s): worst error/bound of every check, %s", strings.Join(rep.Suites, " + "), units.Plural(len(rep.Cases), "case"))
	if failing > 0 {
		title += fmt.Sprintf(", %d failing", failing)
	}
	if rep.Run.Filtered() {
		title += " (filtered run: " + rep.Run.Filter + ")"
	}
	return title
}

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// layerIndex finds the layer index in tensor names.
var layerIndex = regexp.MustCompile(`(?:trace|layers)\.(\d+)\.`)

// checkLayer is the layer a check belongs to, -1 for model-level checks:
// its own Layer, or for an end-to-end parameter gradient the layer in the
// parameter's name.
func checkLayer(ch numerics.CheckRecord) int {
	if ch.Layer >= 0 {
		return ch.Layer
	}
	if m := layerIndex.FindStringSubmatch(ch.Tensor); m != nil {
		var l int
		fmt.Sscan(m[1], &l)
		return l
	}
	return -1
}

// slotLabel names a check's position on the x axis in plain words, the
// same for every layer's check of one op (layers are told apart by
// colour): the op for forward checks ("q_proj", "attention"), ∂ and the
// tensor for backward checks ("∂q", "∂down_proj.weight"), and the tensor
// with "end to end" for whole-model checks.
func slotLabel(ch numerics.CheckRecord) string {
	short := func(t string) string {
		t = strings.TrimPrefix(t, "grad.")
		t = layerIndex.ReplaceAllString(t, "")
		t = strings.NewReplacer("model.", "", "self_attn.", "", "mlp.", "", "trace.", "").Replace(t)
		if strings.HasPrefix(t, "hidden.") {
			t = "hidden"
		}
		return t
	}
	switch ch.Stage {
	case numerics.StageBackward.String():
		return "∂" + short(ch.Tensor)
	case numerics.StageEndToEnd.String():
		if strings.HasPrefix(ch.Name, "integer-kernel") {
			return "kernels vs float logits"
		}
		if strings.HasPrefix(ch.Tensor, "grad.") {
			return "∂" + short(ch.Tensor) + ", end to end"
		}
		return short(ch.Tensor) + ", end to end"
	}
	op, _, _ := strings.Cut(ch.Op, " (")
	return op
}

// stageOrder sorts the x axis: forward ops, backward ops, end to end.
func stageOrder(stage string) int {
	switch stage {
	case numerics.StageForward.String():
		return 0
	case numerics.StageBackward.String():
		return 1
	}
	return 2
}

// plotRatios draws one point per check: x is the op slot (forward ops,
// then backward ops, then the end-to-end checks, each in computation
// order, on shaded bands), y the worst error/bound ratio (log scale,
// clamped to [1e-6, 1e6]; an error or NaN is drawn at the top), the colour
// the layer. The line at 1 is the bound; failing points are large red
// crosses and each case's first failure is ringed (and named when
// nameFirst).
func plotRatios(path, title string, cases []numerics.CaseRecord, nameFirst bool) error {
	type slot struct {
		label string
		stage int
	}
	var slots []slot
	index := map[string]int{}
	for _, c := range cases {
		for _, ch := range c.Checks {
			l := slotLabel(ch)
			if _, ok := index[l]; !ok {
				index[l] = len(slots)
				slots = append(slots, slot{label: l, stage: stageOrder(ch.Stage)})
			}
		}
	}
	sort.SliceStable(slots, func(i, j int) bool { return slots[i].stage < slots[j].stage })
	labels := make([]string, len(slots))
	for i, s := range slots {
		index[s.label] = i
		labels[i] = s.label
	}

	ratioY := func(ch numerics.CheckRecord) float64 {
		if ch.Err != "" || math.IsNaN(ch.Ratio) {
			return 1e6
		}
		return math.Min(1e6, math.Max(1e-6, ch.Ratio))
	}
	byLayer := map[int]plotter.XYs{}
	var failing, firsts plotter.XYs
	var firstNames []string
	maxLayer := -1
	for _, c := range cases {
		for _, ch := range c.Checks {
			layer := checkLayer(ch)
			x := float64(index[slotLabel(ch)]) + 0.04*float64(layer)
			pt := plotter.XY{X: x, Y: ratioY(ch)}
			if ch.Passed {
				byLayer[layer] = append(byLayer[layer], pt)
				maxLayer = max(maxLayer, layer)
			} else {
				failing = append(failing, pt)
			}
			if ch.Name == c.FirstFailure {
				firsts = append(firsts, pt)
				firstNames = append(firstNames, "first failure: "+ch.Name)
			}
		}
	}

	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "check, in computation order (one column per op; layers side by side)"
	p.Y.Label.Text = "worst error / bound (log scale; above 1 fails)"
	p.Y.Scale = plot.LogScale{}
	var ticks []plot.Tick
	for e := -6; e <= 6; e++ {
		ticks = append(ticks, plot.Tick{Value: math.Pow(10, float64(e)), Label: fmt.Sprintf("1e%d", e)})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	// Room above the clamp at 1e6 for the stage names and the legend.
	p.Y.Min, p.Y.Max = 1e-6, 1e8
	p.NominalX(labels...)
	p.X.Tick.Label.Rotation = math.Pi / 2
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter

	var spans []stageSpan
	for i, s := range slots {
		if len(spans) == 0 || spans[len(spans)-1].stage != s.stage {
			spans = append(spans, stageSpan{stage: s.stage, from: i})
		}
		spans[len(spans)-1].to = i
	}
	if err := addStageBands(p, spans); err != nil {
		return err
	}
	bound, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(slots)) - 0.5, Y: 1}})
	if err != nil {
		return err
	}
	bound.Color = color.Black
	bound.Width = vg.Points(1.5)
	bound.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	p.Add(bound)
	p.Legend.Add("bound (error = bound)", bound)
	for layer := -1; layer <= maxLayer; layer++ {
		pts, ok := byLayer[layer]
		if !ok {
			continue
		}
		name := "passing, model-level"
		if layer >= 0 {
			name = fmt.Sprintf("passing, layer %d", layer)
		}
		if err := addScatter(p, pts, plotutil.Color(layer+1), 2, draw.CircleGlyph{}, name); err != nil {
			return err
		}
	}
	red := color.RGBA{R: 220, A: 255}
	if len(failing) > 0 {
		if err := addScatter(p, failing, red, 4, draw.CrossGlyph{}, fmt.Sprintf("failing (%d)", len(failing))); err != nil {
			return err
		}
	}
	if len(firsts) > 0 {
		if err := addScatter(p, firsts, red, 8, draw.RingGlyph{}, "first failure of a case (where divergence starts)"); err != nil {
			return err
		}
		if nameFirst {
			l, err := plotter.NewLabels(plotter.XYLabels{XYs: firsts, Labels: firstNames})
			if err != nil {
				return err
			}
			for i := range l.TextStyle {
				l.TextStyle[i].Color = color.RGBA{R: 180, A: 255}
				l.TextStyle[i].XAlign = draw.XLeft
			}
			l.Offset = vg.Point{X: vg.Points(10), Y: vg.Points(-4)}
			p.Add(l)
		}
	}
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(6)
	width := vg.Length(math.Max(9, 0.16*float64(len(slots)))) * vg.Inch
	return p.Save(width, 7*vg.Inch, path)
}

// addScatter draws points with one glyph and names them in the legend.
func addScatter(p *plot.Plot, pts plotter.XYs, c color.Color, radius float64, shape draw.GlyphDrawer, legend string) error {
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	s.GlyphStyle.Color = c
	s.GlyphStyle.Radius = vg.Points(radius)
	s.GlyphStyle.Shape = shape
	p.Add(s)
	p.Legend.Add(legend, s)
	return nil
}

// stageSpan is a run of x slots of one stage.
type stageSpan struct {
	stage    int
	from, to int // slots from..to inclusive
}

// stageBands are the background colours and names of the stages.
var stageBands = [...]struct {
	name string
	fill color.RGBA
}{
	{"forward ops (teacher-forced)", color.RGBA{R: 225, G: 236, B: 250, A: 255}},
	{"backward ops (teacher-forced)", color.RGBA{R: 252, G: 234, B: 214, A: 255}},
	{"end to end", color.RGBA{R: 232, G: 232, B: 232, A: 255}},
}

// addStageBands shades each stage's slots and names the stage at the top.
func addStageBands(p *plot.Plot, spans []stageSpan) error {
	var names plotter.XYs
	var texts []string
	for _, sp := range spans {
		lo, hi := float64(sp.from)-0.5, float64(sp.to)+0.5
		band, err := plotter.NewPolygon(plotter.XYs{{X: lo, Y: 1e-6}, {X: hi, Y: 1e-6}, {X: hi, Y: 1e8}, {X: lo, Y: 1e8}})
		if err != nil {
			return err
		}
		band.Color = stageBands[sp.stage].fill
		band.LineStyle.Width = 0
		p.Add(band)
		names = append(names, plotter.XY{X: lo + 0.2, Y: 1e7})
		texts = append(texts, stageBands[sp.stage].name)
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: names, Labels: texts})
	if err != nil {
		return err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = draw.XLeft
		l.TextStyle[i].Color = color.RGBA{R: 80, G: 80, B: 80, A: 255}
	}
	p.Add(l)
	return nil
}
