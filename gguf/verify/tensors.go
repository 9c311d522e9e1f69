package verify

import (
	"fmt"
	"math"
	"runtime"

	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
)

// unitRoundoff is float32's u = 2^-24.
const unitRoundoff = 0x1p-24

// converterRelErr bounds the relative difference, for a linear of n
// weights, between a correct converter's mean|W| and this package's, plus
// the float32 roundings both sides make after it. The converter (torch
// float32 W.abs().mean(), a pairwise sum) is off the exact mean by at most
// (⌈log2 n⌉+1)·u; this package sums in float64 and rounds once (u). Then
// each side rounds s = 1/mean (u) and the stored scale 1/s (u): in all
// (⌈log2 n⌉+6)·u. The scale check allows exactly this; the codes check
// counts a code that differs by one step as a rounding tie when the
// master's |W·s| lies within this relative distance of the threshold ½
// (twice the distance a scale error that size can move it).
func converterRelErr(n int) float64 {
	return (math.Ceil(math.Log2(float64(max(n, 2)))) + 6) * unitRoundoff
}

// offlineRelErr bounds a stored scale taken from an offline weight_scale:
// exact for autobitlinear (the value itself), one float32 rounding for
// bitlinear (1/weight_scale); doubled.
const offlineRelErr = 2 * unitRoundoff

// maxListed bounds the mismatching elements listed per tensor.
const maxListed = 5

// hfLinear is one linear of the HF side.
type hfLinear struct {
	codes  []int8    // -1, 0, 1, row-major [out, in]
	latent []float32 // online: the master weight (nil offline)
	s      float32   // online: the weight scale 1/max(mean|W|, 1e-5)
	tie    []bool    // online: codes within the rounding tie band
	// scale is what the GGUF tensor scale must be: the multiplier of the
	// codes, mean|W| (floored at 1e-5 as weight_quant does).
	scale  float64
	rtol   float64
	source string // where the codes and scale come from, for messages
	zero   bool   // every code is 0
}

// linear reads a linear of the HF model: an offline one's codes and
// weight_scale under its convention, or online quantization of the master.
func (r *Reference) linear(name string) (h hfLinear, err error) {
	// A streamed checkpoint reads its codes only now, and the model panics
	// on a code its source cannot give: that is an error of the checkpoint.
	defer func() {
		if e := recover(); e != nil {
			h, err = hfLinear{}, fmt.Errorf("%s: tensor %q: %v", r.Name, name, e)
		}
	}()
	p, ok := r.Model.Param(name)
	if !ok {
		return hfLinear{}, fmt.Errorf("%s: tensor %q: not in the HF model", r.Name, name)
	}
	if t, ws, conv, ok := p.Offline(); ok {
		h = hfLinear{codes: t.Unpack(), scale: float64(ws), rtol: offlineRelErr,
			source: fmt.Sprintf("the checkpoint's packed codes, weight_scale %g under autobitlinear (multiplied)", ws)}
		if conv == model.ScaleDivides {
			h.scale = 1 / float64(ws)
			h.source = fmt.Sprintf("the checkpoint's packed codes, 1/weight_scale = 1/%g under bitlinear (weight_scale = 1/mean|W|, divided)", ws)
		}
		h.zero = allZero(h.codes)
		return h, nil
	}
	w := p.Float32()
	n := len(w)
	var sum float64
	for _, x := range w {
		sum += math.Abs(float64(x))
	}
	mean := 0.0
	if n > 0 {
		mean = sum / float64(n)
	}
	h = hfLinear{latent: w, s: kernels.WeightScale(w), codes: make([]int8, n), tie: make([]bool, n),
		scale: math.Max(mean, float64(float32(1e-5))), rtol: converterRelErr(n)}
	kernels.Ternarize(h.codes, w, h.s)
	for i, x := range w {
		h.tie[i] = math.Abs(math.Abs(float64(x)*float64(h.s))-0.5) <= h.rtol
	}
	h.source = fmt.Sprintf("online weight_quant of the master, mean|W| = %.6g", mean)
	h.zero = allZero(h.codes)
	return h, nil
}

func allZero(codes []int8) bool {
	for _, c := range codes {
		if c != 0 {
			return false
		}
	}
	return true
}

// elemDiff is one differing code.
type elemDiff struct {
	row, col  int
	gguf, hf  int8 // gguf 2 stands for the unused I2_S code 3
	w, ws     float64
	hasLatent bool
}

// linearResult is what the tensor pass found for one linear.
type linearResult struct {
	t          gguf.Tensor
	typ        gguf.Type
	rows, cols int
	skip       string // why it was not compared; "" when it was
	hf         hfLinear

	// codes, in the layout bitnet.cpp's x86 kernel reads (or the float values)
	wrong, ties, invalid int
	listed               []elemDiff
	permuted             bool                // Q/K codes equal the HF codes after llama's permute
	layoutWrong          map[gguf.Layout]int // per layout, when x86 is wrong
	matchLayout          gguf.Layout         // a non-x86 layout that decodes to the HF codes
	matchOther           bool

	scale      float32 // the file's
	nonTernary int     // float linears: values neither 0 nor ±max
	firstNon   elemDiff
	fileZero   bool // every code 0, or scale 0
}

// tensorPass compares every linear once; Codes, Scales, Layout and
// ZeroTensors read its results.
func (v *Verifier) tensorPass() ([]linearResult, error) {
	v.tensorsOnce.Do(func() {
		var todo []gguf.Tensor
		for _, t := range gguf.TensorMap(v.cfg) {
			if t.Spec.Kind == model.KindLinear {
				todo = append(todo, t)
			}
		}
		for i, t := range todo {
			r, err := v.compareLinear(t)
			if err != nil {
				v.tensorsErr = err
				return
			}
			v.linears = append(v.linears, r)
			v.progress(i+1, len(todo), "ternary tensors")
			// A streamed model's temporaries live outside the Go heap
			// until a collection finds them unreachable; the heap itself
			// hardly grows, so collect after each tensor.
			runtime.GC()
		}
	})
	return v.linears, v.tensorsErr
}

// decoded is a linear as the file holds it.
type decoded struct {
	codes   []int8 // -1, 0, 1; the unused I2_S code 3 reads as 2
	scale   float32
	nonTern int
	first   int // first non-ternary element of a float linear
}

// decodeLinear reads a linear in layout l (I2_S), or as floats: codes are
// the signs (|v| < 1e-6 is 0, as quantize_i2_s decides) and the scale is
// max|v|. An error means the data could not be read or decoded.
func (v *Verifier) decodeLinear(info gguf.TensorInfo, rows, cols int, l gguf.Layout) (decoded, error) {
	n := rows * cols
	switch info.Type {
	case gguf.TypeI2S:
		raw, err := v.file.Raw(info.Name)
		if err != nil {
			return decoded{}, err
		}
		codes := make([]byte, n)
		if err := gguf.UnpackI2S(l, raw, rows, cols, codes); err != nil {
			return decoded{}, fmt.Errorf("%s: tensor %q: %v", v.file.Path, info.Name, err)
		}
		d := decoded{codes: make([]int8, n), scale: gguf.I2SScale(raw, n)}
		for i, c := range codes {
			d.codes[i] = int8(c) - 1
		}
		return d, nil
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
		vals, err := v.file.Float32(info.Name)
		if err != nil {
			return decoded{}, err
		}
		d := decoded{codes: make([]int8, n), first: -1}
		for _, x := range vals {
			d.scale = max(d.scale, float32(math.Abs(float64(x))))
		}
		for i, x := range vals {
			a := float32(math.Abs(float64(x)))
			switch {
			case a < 1e-6:
			case x > 0:
				d.codes[i] = 1
			default:
				d.codes[i] = -1
			}
			if a >= 1e-6 && a != d.scale {
				if d.nonTern == 0 {
					d.first = i
				}
				d.nonTern++
			}
		}
		return d, nil
	}
	return decoded{}, fmt.Errorf("%s: tensor %q: type %s is not decoded by this checker (TL1/TL2 tiling depends on the kernel config the file was built for)", v.file.Path, info.Name, info.Type)
}

func (v *Verifier) compareLinear(t gguf.Tensor) (r linearResult, err error) {
	r = linearResult{t: t, rows: int(t.Spec.Shape[0]), cols: int(t.Spec.Shape[1])}
	// The result outlives the pass: keep the HF scale, not its codes and
	// master (6 bytes a weight: 14 GB for 2B-4T).
	defer func() { r.hf.codes, r.hf.latent, r.hf.tie = nil, nil, nil }()
	info, ok := v.file.Tensor(t.GGUF)
	switch {
	case !ok:
		r.skip = "missing from the file (see inventory)"
		return r, nil
	case !equalNe(info.Ne, t.Ne()):
		r.skip = fmt.Sprintf("ne %v, expected %v (see inventory)", info.Ne, t.Ne())
		return r, nil
	}
	r.typ = info.Type
	hf, err := v.ref.linear(t.HF)
	if err != nil {
		return r, err
	}
	r.hf = hf
	d, err := v.decodeLinear(info, r.rows, r.cols, gguf.LayoutX86)
	if err != nil {
		r.skip = err.Error()
		return r, nil
	}
	r.scale, r.nonTernary = d.scale, d.nonTern
	if d.first >= 0 && d.nonTern > 0 {
		r.firstNon = elemDiff{row: d.first / r.cols, col: d.first % r.cols}
	}
	r.fileZero = allZero(d.codes) || d.scale == 0
	r.wrong, r.ties, r.invalid, r.listed = countDiffs(d.codes, hf.codes, hf.tie, r.cols, &hf)
	if r.wrong == 0 || info.Type != gguf.TypeI2S {
		return r, nil
	}
	if heads := gguf.QKHeads(v.cfg, t.GGUF); heads > 0 && r.rows%heads == 0 && (r.rows/heads)%2 == 0 {
		perm := gguf.LlamaPermute(hf.codes, r.rows, r.cols, heads)
		var permTie []bool
		if hf.tie != nil {
			permTie = gguf.LlamaPermute(hf.tie, r.rows, r.cols, heads)
		}
		if w, _, _, _ := countDiffs(d.codes, perm, permTie, r.cols, nil); w == 0 {
			r.permuted = true
			return r, nil
		}
	}
	r.layoutWrong = map[gguf.Layout]int{gguf.LayoutX86: r.wrong}
	for _, l := range gguf.Layouts[1:] {
		if l.PackedOK(r.rows, r.cols) != nil {
			continue
		}
		dl, err := v.decodeLinear(info, r.rows, r.cols, l)
		if err != nil {
			continue
		}
		w, _, _, _ := countDiffs(dl.codes, hf.codes, hf.tie, r.cols, nil)
		r.layoutWrong[l] = w
		if w == 0 && !r.matchOther {
			r.matchLayout, r.matchOther = l, true
		}
	}
	return r, nil
}

// countDiffs compares file codes with HF codes: a one-step difference on a
// tie element is a tie, any other difference is wrong (and listed, up to
// maxListed, when hf is given); code 2 (I2_S code 3) is invalid.
func countDiffs(got, want []int8, tie []bool, cols int, hf *hfLinear) (wrong, ties, invalid int, listed []elemDiff) {
	for i, g := range got {
		if g == 2 {
			invalid++
		}
		w := want[i]
		if g == w {
			continue
		}
		if tie != nil && tie[i] && g != 2 && (g-w == 1 || w-g == 1) {
			ties++
			continue
		}
		wrong++
		if hf != nil && len(listed) < maxListed {
			e := elemDiff{row: i / cols, col: i % cols, gguf: g, hf: w}
			if hf.latent != nil {
				e.hasLatent, e.w, e.ws = true, float64(hf.latent[i]), float64(hf.latent[i])*float64(hf.s)
			}
			listed = append(listed, e)
		}
	}
	return wrong, ties, invalid, listed
}

func codeText(c int8) string {
	if c == 2 {
		return "code 3 (unused: neither -1, 0 nor +1)"
	}
	return fmt.Sprintf("%+d", c)
}

func (e elemDiff) String() string {
	s := fmt.Sprintf("[%d,%d]: gguf=%s, hf=%+d", e.row, e.col, codeText(e.gguf), e.hf)
	if e.hasLatent {
		s += fmt.Sprintf(" (W=%.6g, W/mean|W|=%.4f)", e.w, e.ws)
	}
	return s
}

func (r linearResult) elements() int { return r.rows * r.cols }

// Codes checks every ternary code of every linear against the HF codes
// (online: weight_quant of the master; offline: the packed codes), row by
// row, in the x86 ACT_PARALLEL decode bitnet.cpp uses. A Q/K tensor whose
// rows carry llama's permutation is named as such; a tensor that decodes
// right only in another layout says so (see Layout). Codes that differ by
// one step where the master sits within converterRelErr of the rounding
// threshold are rounding ties, not findings.
func (v *Verifier) Codes() ([]Finding, error) {
	rs, err := v.tensorPass()
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, r := range rs {
		name := r.t.GGUF
		n := r.elements()
		switch {
		case r.skip != "":
			out = append(out, finding(CheckCodes, "", name, "", "", "%s: codes not compared: %s", name, r.skip))
			continue
		case r.nonTernary > 0:
			out = append(out, Finding{Check: CheckCodes, Tensor: name, Row: r.firstNon.row, Col: r.firstNon.col, Expected: "0 or ±max|v|", Actual: "other",
				Message: fmt.Sprintf("%s: %d of %d %s values are neither 0 nor ±%g (max|v|), first at [%d,%d]: not ternarized floats", name, r.nonTernary, n, r.typ, r.scale, r.firstNon.row, r.firstNon.col)})
		}
		if r.wrong == 0 {
			continue
		}
		first := r.listed[0]
		switch {
		case r.permuted:
			out = append(out, Finding{Check: CheckCodes, Tensor: name, Row: first.row, Col: first.col, Expected: codeText(first.hf), Actual: codeText(first.gguf),
				Message: fmt.Sprintf("%s: rows carry llama's Q/K permutation (convert_hf_to_gguf LlamaModel.permute, n_head=%d): every code equals the HF codes after moving row j·hd/2+i of each head to 2i+j; as stored, %d of %d codes differ, first %s. bitnet.cpp's NEOX RoPE expects the HF row order",
					name, gguf.QKHeads(v.cfg, name), r.wrong, n, first)})
		case r.matchOther:
			out = append(out, Finding{Check: CheckCodes, Tensor: name, Row: first.row, Col: first.col, Expected: codeText(first.hf), Actual: codeText(first.gguf),
				Message: fmt.Sprintf("%s: %d of %d codes differ from the HF codes in the x86 ACT_PARALLEL decode bitnet.cpp uses, first %s; the file decodes to the HF codes in the %s layout (see layout)",
					name, r.wrong, n, first, r.matchLayout)})
		case r.fileZero && !r.hf.zero:
			out = append(out, Finding{Check: CheckCodes, Tensor: name, Row: first.row, Col: first.col, Expected: codeText(first.hf), Actual: codeText(first.gguf),
				Message: fmt.Sprintf("%s: every code is 0 (scale %g) but %d of %d HF codes are not (see zero-tensors), first %s", name, r.scale, r.wrong, n, first)})
		default:
			for _, e := range r.listed {
				out = append(out, Finding{Check: CheckCodes, Tensor: name, Row: e.row, Col: e.col, Expected: codeText(e.hf), Actual: codeText(e.gguf),
					Message: fmt.Sprintf("%s%s, from %s", name, e, r.hf.source)})
			}
			if r.wrong > len(r.listed) {
				out = append(out, finding(CheckCodes, "", name, "", "", "%s: %d of %d codes differ from the HF codes (first %d listed)", name, r.wrong, n, len(r.listed)))
			}
		}
	}
	return out, nil
}

// Scales checks every linear's scale (the f32 in the I2_S tail, or max|v|
// of a float linear) against what it must multiply the codes by: mean|W|
// of the master (online), weight_scale (offline autobitlinear) or
// 1/weight_scale (offline bitlinear), within converterRelErr (plus the
// rounding of an F16/BF16 value). A scale that is the inverse is named as
// inverted. All-zero tensors are left to ZeroTensors.
func (v *Verifier) Scales() ([]Finding, error) {
	rs, err := v.tensorPass()
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, r := range rs {
		if r.skip != "" || r.fileZero {
			continue
		}
		name := r.t.GGUF
		rtol := r.hf.rtol
		switch r.typ {
		case gguf.TypeF16:
			rtol += 0x1p-11
		case gguf.TypeBF16:
			rtol += 0x1p-8
		}
		got, want := float64(r.scale), r.hf.scale
		if !(math.Abs(got-want) <= rtol*want) {
			if inv := 1 / want; math.Abs(got-inv) <= rtol*inv {
				out = append(out, finding(CheckScales, "", name, fmt.Sprintf("%.7g", want), fmt.Sprintf("%.7g", got),
					"%s: scale inverted: gguf=%.7g, expected %.7g from %s; the file holds 1/expected, as a bitlinear weight_scale (1/mean|W|) taken for autobitlinear's, or the converter's divide, gives", name, got, want, r.hf.source))
				continue
			}
			out = append(out, finding(CheckScales, "", name, fmt.Sprintf("%.7g", want), fmt.Sprintf("%.7g", got),
				"%s: scale gguf=%.7g, expected %.7g from %s (relative error %.3g, bound %.3g)", name, got, want, r.hf.source, relDiff(got, want), rtol))
		}
	}
	return out, nil
}

// Layout names every I2_S tensor that is not in the x86 ACT_PARALLEL
// 128/32 layout of record but decodes to the HF codes in another layout
// bitnet.cpp code has used: ARM NEON 64/16, the non-ACT_PARALLEL 4-row
// interleave, or a sequential 4-per-byte packing. Tensors are grouped by
// layout: one finding per layout found.
func (v *Verifier) Layout() ([]Finding, error) {
	rs, err := v.tensorPass()
	if err != nil {
		return nil, err
	}
	type group struct {
		first  linearResult
		count  int
		layout gguf.Layout
	}
	var groups []*group
	byLayout := map[gguf.Layout]*group{}
	ternary := 0
	for _, r := range rs {
		if r.skip == "" && r.typ == gguf.TypeI2S {
			ternary++
		}
		if !r.matchOther {
			continue
		}
		g := byLayout[r.matchLayout]
		if g == nil {
			g = &group{first: r, layout: r.matchLayout}
			byLayout[r.matchLayout] = g
			groups = append(groups, g)
		}
		g.count++
	}
	var out []Finding
	for _, g := range groups {
		r := g.first
		others := ""
		for _, l := range gguf.Layouts {
			if w, ok := r.layoutWrong[l]; ok && l != g.layout && l != gguf.LayoutX86 {
				others += fmt.Sprintf("; %s decode: %d wrong", l, w)
			}
		}
		out = append(out, finding(CheckLayout, "", r.t.GGUF, gguf.LayoutX86.String(), g.layout.String(),
			"%d of %d I2_S tensors are packed in the %s layout, first %s: decoded in it, every code equals the HF codes, while bitnet.cpp's x86 ACT_PARALLEL 128/32 decode gets %d of %d wrong%s",
			g.count, ternary, g.layout, r.t.GGUF, r.layoutWrong[gguf.LayoutX86], r.elements(), others))
	}
	return out, nil
}

// ZeroTensors flags every ternary tensor whose codes are all 0 or whose
// scale is 0: it computes zero, as the zeroed re-uploads of
// microsoft/BitNet#608 did (I2_S bytes 0x55).
func (v *Verifier) ZeroTensors() ([]Finding, error) {
	rs, err := v.tensorPass()
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, r := range rs {
		if r.skip != "" || !r.fileZero {
			continue
		}
		hf := fmt.Sprintf("the HF tensor is not (%s)", r.hf.source)
		if r.hf.zero {
			hf = "the HF tensor is all zero too: the checkpoint itself is zeroed"
		}
		out = append(out, finding(CheckZeroTensors, "", r.t.GGUF, "non-zero", "zero",
			"%s: all-zero ternary tensor (%d elements, scale %g): it computes zero, the pattern of the zeroed re-uploads (microsoft/BitNet#608); %s", r.t.GGUF, r.elements(), r.scale, hf))
	}
	return out, nil
}
