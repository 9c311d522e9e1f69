package model

import (
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/kernels"
)

func TestNewDeterministicAcrossThreads(t *testing.T) {
	cfg := tinyConfig(false)
	var first *Model
	for _, procs := range []int{1, 2, 3} { // New has no helper pool
		old := runtime.GOMAXPROCS(procs)
		m, err := New(cfg, Options{Seed: 42})
		runtime.GOMAXPROCS(old)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = m
			continue
		}
		for i, p := range m.params {
			a, b := p.Float32(), first.params[i].Float32()
			for j := range a {
				if a[j] != b[j] {
					t.Fatalf("GOMAXPROCS %d: %s[%d] = %v, want %v", procs, p.Name(), j, a[j], b[j])
				}
			}
		}
	}
	zero, _ := New(cfg, Options{Seed: 42, Zero: true})
	for _, p := range zero.Params() {
		for i, v := range p.Float32() {
			if v != 0 {
				t.Fatalf("Zero: %s[%d] = %v", p.Name(), i, v)
			}
		}
	}
	other, _ := New(cfg, Options{Seed: 43})
	if other.params[0].Float32()[0] == first.params[0].Float32()[0] {
		t.Error("seeds 42 and 43 give the same first weight")
	}
}

func TestNewInitStatistics(t *testing.T) {
	cfg := tinyConfig(false)
	cfg.InitializerRange = 0.02
	m, err := New(cfg, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		v := p.Float32()
		if p.Spec().Kind == KindNorm {
			for i, x := range v {
				if x != 1 {
					t.Fatalf("%s[%d] = %v, want 1", p.Name(), i, x)
				}
			}
			continue
		}
		var s2 float64
		for _, x := range v {
			s2 += float64(x) * float64(x)
		}
		std := math.Sqrt(s2 / float64(len(v)))
		if math.Abs(std-0.02) > 0.02*5/math.Sqrt(float64(len(v))) {
			t.Errorf("%s: std %.4g, want 0.02", p.Name(), std)
		}
	}
	if m.ParamCount() != cfg.ParamCount() {
		t.Errorf("ParamCount %d, want %d", m.ParamCount(), cfg.ParamCount())
	}
	if m.MemoryBytes() != 4*cfg.ParamCount() {
		t.Errorf("MemoryBytes %d, want %d (f32)", m.MemoryBytes(), 4*cfg.ParamCount())
	}
}

// Forward must be bit-identical for any thread count, on both paths, and so
// must the gradients. (The two paths round differently, so they agree only
// to within quantizer flips: the harness's "integer-kernel logits against
// float-path logits" check bounds that from each golden case's spread.)
func TestForwardDeterministicAcrossThreads(t *testing.T) {
	cfg := tinyConfig(true)
	cfg.HiddenSize, cfg.IntermediateSize, cfg.VocabSize = 64, 160, 300
	m, err := New(cfg, Options{Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	b := tinyBatch(cfg, 2, 16, 4)
	var ref [2]*Output
	var refGrad *GradResult
	for _, procs := range []int{1, 2} { // more than the CPUs would leave kernels helpers spinning for later tests
		old := runtime.GOMAXPROCS(procs)
		for i, c := range []Compute{ComputeKernels, ComputeFloat} {
			out, err := m.Forward(b, ForwardOptions{Compute: c})
			if err != nil {
				t.Fatal(err)
			}
			if ref[i] == nil {
				ref[i] = out
			} else if s := compare(out.Logits.Data, ref[i].Logits.Data); s.maxAbs != 0 {
				t.Errorf("%v, GOMAXPROCS %d: logits differ from GOMAXPROCS 1 by %g", c, procs, s.maxAbs)
			}
		}
		g, err := m.Gradients(b, GradOptions{Keep: true})
		runtime.GOMAXPROCS(old)
		if err != nil {
			t.Fatal(err)
		}
		if refGrad == nil {
			refGrad = g
			continue
		}
		for name, grad := range g.Grads {
			if s := compare(grad.Data, refGrad.Grads[name].Data); s.maxAbs != 0 {
				t.Errorf("GOMAXPROCS %d: grad %s differs by %g", procs, name, s.maxAbs)
			}
		}
	}
}

// The piecewise API (Embed, Layer, FinalNorm, Head) composes to Forward.
func TestPiecewiseMatchesForward(t *testing.T) {
	g := loadGolden(t, exampleGolden)
	m, err := FromTensors(g.cfg, g.params())
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Forward(g.batch, ForwardOptions{Trace: true, Compute: ComputeFloat})
	if err != nil {
		t.Fatal(err)
	}
	x, err := m.Embed(g.batch)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < int(g.cfg.NumHiddenLayers); i++ {
		if x, err = m.Layer(i, x, ComputeFloat); err != nil {
			t.Fatal(err)
		}
		if s := compare(x.Data, out.Hidden[i+1].Data); s.maxAbs != 0 {
			t.Errorf("Layer %d differs from Forward's hidden.%d by %g", i, i+1, s.maxAbs)
		}
	}
	if x, err = m.FinalNorm(x); err != nil {
		t.Fatal(err)
	}
	logits, err := m.Head(x)
	if err != nil {
		t.Fatal(err)
	}
	if s := compare(logits.Data, out.Logits.Data); s.maxAbs != 0 {
		t.Errorf("Head differs from Forward by %g", s.maxAbs)
	}
}

func TestBadInputs(t *testing.T) {
	cfg := tinyConfig(true)
	m, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		b    Batch
		want string
	}{
		{"token out of vocab", Batch{B: 2, T: 2, IDs: []int32{1, 2, 3, 300}}, "input_ids[1,1] = 300: outside vocab [0, 32)"},
		{"negative token", Batch{B: 1, T: 2, IDs: []int32{-1, 2}}, "input_ids[0,0] = -1: outside vocab [0, 32)"},
		{"too long", Batch{B: 1, T: 17, IDs: make([]int32, 17)}, "T=17 exceeds max_position_embeddings 16"},
		{"empty", Batch{}, "empty batch"},
		{"ids vs shape", Batch{B: 2, T: 3, IDs: make([]int32, 5)}, "expected B*T = 2*3 = 6 ids, got 5"},
	}
	for _, c := range cases {
		if _, err := m.Forward(c.b, ForwardOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Forward error %v, want it to contain %q", c.name, err, c.want)
		}
		if _, err := m.Gradients(c.b, GradOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Gradients error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	if _, err := m.Gradients(Batch{B: 1, T: 1, IDs: []int32{1}}, GradOptions{}); err == nil {
		t.Error("Gradients accepted T=1")
	}
	if _, err := m.Forward(tinyBatch(cfg, 1, 3, 1), ForwardOptions{Compute: 7}); err == nil || !strings.Contains(err.Error(), "Compute(7)") {
		t.Errorf("bad compute: %v", err)
	}
	if _, err := m.Layer(2, NewTensor(1, 3, 16), ComputeFloat); err == nil || !strings.Contains(err.Error(), "index 2 outside [0, 2)") {
		t.Errorf("bad layer index: %v", err)
	}
	if _, err := m.Layer(0, NewTensor(1, 3, 15), ComputeFloat); err == nil || !strings.Contains(err.Error(), "[B,T,16]") {
		t.Errorf("bad layer input: %v", err)
	}
	if _, err := m.Head(nil); err == nil {
		t.Error("Head accepted nil")
	}
	if _, err := CrossEntropy(NewTensor(1, 3, 4), Batch{B: 1, T: 3, IDs: []int32{0, 1, 9}}); err == nil || !strings.Contains(err.Error(), "= 9: outside vocab [0, 4)") {
		t.Errorf("CrossEntropy bad id: %v", err)
	}
	if _, err := BitLinear(NewTensor(2, 5), NewTensor(3, 4)); err == nil || !strings.Contains(err.Error(), "[N,4]") {
		t.Errorf("BitLinear shapes: %v", err)
	}
	if _, _, err := BitLinearBackward(NewTensor(2, 4), NewTensor(3, 4), NewTensor(2, 4)); err == nil || !strings.Contains(err.Error(), "[2,3]") {
		t.Errorf("BitLinearBackward shapes: %v", err)
	}
	bad := cfg
	bad.NumKeyValueHeads = 3
	if _, err := New(bad, Options{}); err == nil {
		t.Error("New accepted an invalid config")
	}
	if _, err := New(cfg, Options{Storage: 9}); err == nil {
		t.Error("New accepted an unknown storage")
	}
}

func TestFromTensorsErrors(t *testing.T) {
	cfg := tinyConfig(false)
	m, _ := New(cfg, Options{Seed: 2})
	params := func() map[string]*Tensor {
		out := map[string]*Tensor{}
		for _, p := range m.Params() {
			out[p.Name()] = &Tensor{Shape: p.Shape(), Data: p.Float32()}
		}
		return out
	}
	if _, err := FromTensors(cfg, params()); err != nil {
		t.Fatal(err)
	}
	p := params()
	delete(p, "model.layers.1.mlp.up_proj.weight")
	if _, err := FromTensors(cfg, p); err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.up_proj.weight") {
		t.Errorf("missing tensor: %v", err)
	}
	p = params()
	p["model.layers.9.mlp.up_proj.weight"] = NewTensor(1)
	if _, err := FromTensors(cfg, p); err == nil || !strings.Contains(err.Error(), "model.layers.9.mlp.up_proj.weight: unexpected") {
		t.Errorf("unexpected tensor: %v", err)
	}
	p = params()
	p["model.layers.0.self_attn.k_proj.weight"] = NewTensor(16, 8)
	if _, err := FromTensors(cfg, p); err == nil || !strings.Contains(err.Error(), "expected shape [8,16], got [16,8]") {
		t.Errorf("wrong shape: %v", err)
	}
}

func TestSetInvalidatesCache(t *testing.T) {
	cfg := tinyConfig(true)
	m, _ := New(cfg, Options{Seed: 3})
	b := tinyBatch(cfg, 1, 8, 2)
	before, _ := m.Forward(b, ForwardOptions{})
	p, ok := m.Param("model.layers.0.mlp.down_proj.weight")
	if !ok {
		t.Fatal("no down_proj")
	}
	w := append([]float32(nil), p.Float32()...)
	for i := range w {
		w[i] = -w[i]
	}
	if err := p.Set(w); err != nil {
		t.Fatal(err)
	}
	after, _ := m.Forward(b, ForwardOptions{})
	if compare(after.Logits.Data, before.Logits.Data).maxAbs == 0 {
		t.Error("Set did not change the kernel path's output (stale cache)")
	}
	// a model built with the new values from the start computes the same
	// bits in the same order
	fresh, err := FromTensors(cfg, tensorsOf(m))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fresh.Forward(b, ForwardOptions{})
	if s := compare(after.Logits.Data, want.Logits.Data); s.maxAbs != 0 {
		t.Errorf("after Set, the kernel path differs from a fresh model's by %g (stale cache)", s.maxAbs)
	}
	if err := p.Set(w[:3]); err == nil {
		t.Error("Set accepted a wrong length")
	}
}

// tensorsOf copies m's parameters, for FromTensors.
func tensorsOf(m *Model) map[string]*Tensor {
	out := map[string]*Tensor{}
	for _, p := range m.Params() {
		out[p.Name()] = &Tensor{Shape: p.Shape(), Data: append([]float32(nil), p.Float32()...)}
	}
	return out
}

func TestBF16Storage(t *testing.T) {
	cfg := tinyConfig(true)
	m32, _ := New(cfg, Options{Seed: 4, Storage: StorageF32})
	m16, _ := New(cfg, Options{Seed: 4, Storage: StorageBF16})
	if m16.MemoryBytes() != 2*cfg.ParamCount() {
		t.Errorf("bf16 MemoryBytes %d, want %d", m16.MemoryBytes(), 2*cfg.ParamCount())
	}
	for i, p := range m16.params {
		a, b := p.Float32(), m32.params[i].Float32()
		for j := range a {
			if math.Abs(float64(a[j]-b[j])) > math.Abs(float64(b[j]))/256 {
				t.Fatalf("%s[%d]: bf16 %v vs f32 %v", p.Name(), j, a[j], b[j])
			}
		}
	}
	// the bf16 model equals an f32 model holding the same rounded values
	mr, _ := New(cfg, Options{Storage: StorageF32})
	for i, p := range mr.params {
		if err := p.Set(m16.params[i].Float32()); err != nil {
			t.Fatal(err)
		}
	}
	// Both compute the same values in the same order: bit-identical. On
	// the kernel path this needs the same ternary weights, which bf16
	// quantization gets through a histogram (kernels.go); the codes and
	// scales are compared first so that a difference there is named as such.
	for _, p := range m16.Params() {
		if p.Spec().Kind != KindLinear {
			continue
		}
		pr, _ := mr.Param(p.Name())
		t16, err16 := p.ternary()
		tr, errr := pr.ternary()
		if err16 != nil || errr != nil {
			t.Fatal(err16, errr)
		}
		if t16.scale != tr.scale || !slices.Equal(t16.t.Unpack(), tr.t.Unpack()) {
			t.Errorf("%s: bf16 quantization differs from float32's on the same values (scale %v vs %v)", p.Name(), t16.scale, tr.scale)
		}
	}
	b := tinyBatch(cfg, 2, 8, 5)
	for _, c := range []Compute{ComputeKernels, ComputeFloat} {
		o16, err := m16.Forward(b, ForwardOptions{Compute: c})
		if err != nil {
			t.Fatal(err)
		}
		or, _ := mr.Forward(b, ForwardOptions{Compute: c})
		if s := compare(o16.Logits.Data, or.Logits.Data); s.maxAbs != 0 {
			t.Errorf("%v: bf16 vs rounded f32 logits differ by %g", c, s.maxAbs)
		}
		g16, _ := m16.Gradients(b, GradOptions{Keep: true, Compute: c})
		gr, _ := mr.Gradients(b, GradOptions{Keep: true, Compute: c})
		for name, g := range g16.Grads {
			if s := compare(g.Data, gr.Grads[name].Data); s.maxAbs != 0 {
				t.Errorf("%v: grad %s: bf16 vs rounded f32 differ by %g", c, name, s.maxAbs)
			}
		}
	}
}

func TestSetTernary(t *testing.T) {
	g := loadGolden(t, exampleGolden)
	m, err := FromTensors(g.cfg, g.params())
	if err != nil {
		t.Fatal(err)
	}
	b := g.batch
	want := map[Compute]*Output{}
	for _, c := range []Compute{ComputeKernels, ComputeFloat} {
		want[c], _ = m.Forward(b, ForwardOptions{Compute: c})
	}
	// In the bitlinear convention an offline weight_scale is s itself and
	// divides, as online quantization does: the offline model computes the
	// same bits. (The autobitlinear convention multiplies by 1/s, another
	// rounding: conformance/numerics bounds that model by the golden checks.)
	off, _ := FromTensors(g.cfg, g.params())
	for _, p := range m.Params() {
		if p.Spec().Kind != KindLinear {
			continue
		}
		tw, err := p.ternary()
		if err != nil {
			t.Fatal(err)
		}
		if err := off.SetOffline(p.Name(), tw.t, tw.scale, ScaleDivides); err != nil {
			t.Fatal(err)
		}
	}
	if off.MemoryBytes() >= m.MemoryBytes() {
		t.Errorf("offline model holds %d bytes, online %d", off.MemoryBytes(), m.MemoryBytes())
	}
	for _, c := range []Compute{ComputeKernels, ComputeFloat} {
		got, err := off.Forward(b, ForwardOptions{Compute: c})
		if err != nil {
			t.Fatal(err)
		}
		if s := compare(got.Logits.Data, want[c].Logits.Data); s.maxAbs != 0 {
			t.Errorf("%v: offline vs online logits differ by %g", c, s.maxAbs)
		}
	}
	if _, err := off.Gradients(b, GradOptions{}); err != nil {
		t.Errorf("gradients on an offline model: %v", err)
	}
	tern, _ := kernels.PackTernary(make([]int8, 4*4), 4, 4)
	if err := off.SetTernary("model.layers.0.self_attn.q_proj.weight", tern, 1); err == nil || !strings.Contains(err.Error(), "expected ternary shape [64,64], got [4,4]") {
		t.Errorf("wrong ternary shape: %v", err)
	}
	if err := off.SetTernary("model.norm.weight", tern, 1); err == nil {
		t.Error("SetTernary accepted a norm weight")
	}
}

// bf16 storage lives outside the Go heap; dropping it (SetOffline) and
// collecting models must never touch freed memory.
func TestBF16StorageLifetime(t *testing.T) {
	cfg := tinyConfig(true)
	b := tinyBatch(cfg, 1, 6, 1)
	for i := 0; i < 3; i++ {
		m, err := New(cfg, Options{Seed: uint64(i), Storage: StorageBF16})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := m.Forward(b, ForwardOptions{})
		for _, p := range m.Params() {
			if p.Spec().Kind == KindLinear {
				tw, _ := p.ternary()
				// weight_scale = s dividing: the same bits as online (TestSetTernary)
				if err := m.SetOffline(p.Name(), tw.t, tw.scale, ScaleDivides); err != nil {
					t.Fatal(err)
				}
			}
		}
		runtime.GC()
		got, err := m.Forward(b, ForwardOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s := compare(got.Logits.Data, want.Logits.Data); s.maxAbs != 0 {
			t.Errorf("after SetOffline and a collection: logits differ by %g", s.maxAbs)
		}
		if err := m.Params()[1].Set(make([]float32, Elements(m.Params()[1].Shape()))); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
}
