package verify

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/kernels/sgemm"
	"github.com/tritter-ai/conformance/model"
)

// randomBatch is conformance.RandomBatch: token ids in [0, V) for B rows
// of T from seed.
func randomBatch(cfg model.Config, B, T int, seed uint64) model.Batch {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(rng.IntN(int(cfg.VocabSize)))
	}
	return model.Batch{B: B, T: T, IDs: ids}
}

// LogitsBound is the logits check's bound for a measured spread: the
// harness's end-to-end bound (conformance/numerics, golden/TOLERANCE.md),
// relL2 ≤ max(EndToEndFloor, EndToEndSpreadFactor·spread).
//
// Why it applies. The model decoded from a faithful file and the HF model
// run on the file's own F16-rounded embedding (and F16-rounded lm_head)
// hold the same codes, norms and embedding; they differ only in each
// linear's dequantizing factor: the file's scale, a float32 of mean|W|
// within converterRelErr(n) ≈ 2^-19 of HF's 1/s_w, multiplied (HF
// divides by s_w). Each linear output therefore differs by a relative
// amount of order 2^-19 or less. Without rounding decisions that would
// move the logits by about that much, far under EndToEndFloor (1e-4, 300
// times float32 agreement). With them, an activation within that distance
// of a rounding boundary of act_quant may round the other way, which is
// exactly the perturbation the spread measures: SpreadRuns runs of the HF
// model with every quantizer input scaled by 1+ε, ε uniform in ±2^-21;
// the spread is their largest relL2 distance from the unjittered run. A
// conversion error (a wrong code, a permuted row, a wrong scale, a wrong
// layout) changes weights by whole steps, not by 2^-19, and moves the
// logits by orders of magnitude more.
func LogitsBound(spread float64) float64 {
	return math.Max(numerics.EndToEndFloor, numerics.EndToEndSpreadFactor*spread)
}

// logitsResult holds the forward passes the logits checks share.
type logitsResult struct {
	decodeErr error // the file could not be decoded into a model (a finding)
	gguf, hf  *model.Output
	relL2     float64
	worst     [3]int
	g, h      float32
	spread    float64
	bound     float64
}

// fileSource supplies the decoder layers of the model decoded from the
// file: each linear as ternary codes times the file's scale.
type fileSource struct {
	v    *Verifier
	byHF map[string]gguf.Tensor
}

func (s *fileSource) tensor(name string) (gguf.Tensor, gguf.TensorInfo, error) {
	t, ok := s.byHF[name]
	if !ok {
		return t, gguf.TensorInfo{}, fmt.Errorf("%s: no GGUF tensor for HF %q", s.v.file.Path, name)
	}
	info, ok := s.v.file.Tensor(t.GGUF)
	if !ok {
		return t, info, fmt.Errorf("%s: tensor %q (HF %s): missing", s.v.file.Path, t.GGUF, name)
	}
	if !equalNe(info.Ne, t.Ne()) {
		return t, info, fmt.Errorf("%s: tensor %q: ne %v, expected %v", s.v.file.Path, t.GGUF, info.Ne, t.Ne())
	}
	return t, info, nil
}

// Offline decodes a linear as bitnet.cpp's x86 kernel reads it: value
// (code-1)·scale. A zero scale makes the tensor zero and a negative one
// negates it, so both are represented with positive scales.
func (s *fileSource) Offline(name string) (*kernels.Ternary, float32, model.ScaleConvention, bool, error) {
	t, info, err := s.tensor(name)
	if err != nil {
		return nil, 0, 0, false, err
	}
	rows, cols := int(t.Spec.Shape[0]), int(t.Spec.Shape[1])
	d, err := s.v.decodeLinear(info, rows, cols, gguf.LayoutX86)
	if err != nil {
		return nil, 0, 0, false, err
	}
	if d.nonTern > 0 {
		return nil, 0, 0, false, nil // real floats: Latent gives them
	}
	for i, c := range d.codes {
		if c == 2 {
			return nil, 0, 0, false, fmt.Errorf("%s: tensor %q [%d,%d]: I2_S code 3, which no ternary value has", s.v.file.Path, t.GGUF, i/cols, i%cols)
		}
	}
	scale := d.scale
	switch {
	case math.IsNaN(float64(scale)) || math.IsInf(float64(scale), 0):
		return nil, 0, 0, false, fmt.Errorf("%s: tensor %q: scale %g", s.v.file.Path, t.GGUF, scale)
	case scale == 0:
		d.codes, scale = make([]int8, len(d.codes)), 1
	case scale < 0:
		for i := range d.codes {
			d.codes[i] = -d.codes[i]
		}
		scale = -scale
	}
	w, err := kernels.PackTernary(d.codes, rows, cols)
	if err != nil {
		return nil, 0, 0, false, fmt.Errorf("%s: tensor %q: %v", s.v.file.Path, t.GGUF, err)
	}
	return w, scale, model.ScaleMultiplies, true, nil
}

// Latent reads a norm (or a non-ternary float linear).
func (s *fileSource) Latent(name string, dst []float32) error {
	t, info, err := s.tensor(name)
	if err != nil {
		return err
	}
	vals, err := s.v.file.Float32(info.Name)
	if err != nil {
		return err
	}
	if len(vals) != len(dst) {
		return fmt.Errorf("%s: tensor %q: %d values, expected %d", s.v.file.Path, t.GGUF, len(vals), len(dst))
	}
	copy(dst, vals)
	return nil
}

// modelSource supplies the decoder layers of a view of the HF model.
type modelSource struct{ m *model.Model }

func (s modelSource) Offline(name string) (*kernels.Ternary, float32, model.ScaleConvention, bool, error) {
	p, ok := s.m.Param(name)
	if !ok {
		return nil, 0, 0, false, fmt.Errorf("tensor %q: not in the HF model", name)
	}
	w, ws, conv, ok := p.Offline()
	return w, ws, conv, ok, nil
}

func (s modelSource) Latent(name string, dst []float32) error {
	p, ok := s.m.Param(name)
	if !ok {
		return fmt.Errorf("tensor %q: not in the HF model", name)
	}
	copy(dst, p.Float32())
	return nil
}

// view builds a layer-streamed float32 model of cfg whose layers come from
// src and whose embedding, final norm and (untied) lm_head are given.
func view(cfg model.Config, src model.TensorSource, embed, norm, head []float32) (*model.Model, error) {
	m, err := model.New(cfg, model.Options{Storage: model.StorageF32, Streamed: true, Source: src})
	if err != nil {
		return nil, err
	}
	set := func(name string, v []float32) error {
		p, ok := m.Param(name)
		if !ok {
			return fmt.Errorf("tensor %q: not in the model", name)
		}
		return p.Set(v)
	}
	if err := set("model.embed_tokens.weight", embed); err != nil {
		return nil, err
	}
	if err := set("model.norm.weight", norm); err != nil {
		return nil, err
	}
	if !cfg.TieWordEmbeddings {
		if err := set("lm_head.weight", head); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// decodedModel is the model the file describes, under HF semantics:
// the HF config's shapes (tied when the file has no output.weight),
// token_embd and output as stored, norms F32, linears as codes × scale.
func (v *Verifier) decodedModel() (*model.Model, error) {
	cfg := v.cfg
	_, hasOutput := v.file.Tensor("output.weight")
	cfg.TieWordEmbeddings = !hasOutput
	src := &fileSource{v: v, byHF: map[string]gguf.Tensor{}}
	for _, t := range gguf.TensorMap(cfg) {
		src.byHF[t.HF] = t
		if t.Spec.Layer >= 0 {
			continue
		}
		if _, _, err := src.tensor(t.HF); err != nil {
			return nil, err
		}
	}
	embed, err := v.file.Float32("token_embd.weight")
	if err != nil {
		return nil, err
	}
	norm, err := v.file.Float32("output_norm.weight")
	if err != nil {
		return nil, err
	}
	var head []float32
	if hasOutput {
		if head, err = v.file.Float32("output.weight"); err != nil {
			return nil, err
		}
	}
	return view(cfg, src, embed, norm, head)
}

// referenceModel is the HF model with its embedding, and its untied
// lm_head, rounded to the types the file stores them in (F16 for
// bitnet.cpp files): the HF computation on the file's own rounding.
func (v *Verifier) referenceModel() (*model.Model, error) {
	m := v.ref.Model
	rounded := func(name, ggufName string) ([]float32, error) {
		p, ok := m.Param(name)
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q: not in the HF model", v.ref.Name, name)
		}
		typ := gguf.TypeF16
		if info, ok := v.file.Tensor(ggufName); ok && (info.Type == gguf.TypeF32 || info.Type == gguf.TypeBF16) {
			typ = info.Type
		}
		vals := p.Float32() // read only: it may be the model's own storage
		out := make([]float32, len(vals))
		for i, x := range vals {
			out[i] = gguf.RoundTo(typ, x)
		}
		return out, nil
	}
	embed, err := rounded("model.embed_tokens.weight", "token_embd.weight")
	if err != nil {
		return nil, err
	}
	p, ok := m.Param("model.norm.weight")
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: not in the HF model", v.ref.Name, "model.norm.weight")
	}
	norm := p.Float32()
	var head []float32
	if !v.cfg.TieWordEmbeddings {
		if head, err = rounded("lm_head.weight", "output.weight"); err != nil {
			return nil, err
		}
	}
	runtime.GC() // the copies rounded read from go before the view allocates its own
	return view(v.cfg, modelSource{m}, embed, norm, head)
}

// forwards runs the decoded model, the HF reference and the HF spread runs
// once, on the fixed batch.
func (v *Verifier) forwards() (*logitsResult, error) {
	v.logitsOnce.Do(func() { v.logits, v.logitsErr = v.runForwards() })
	return v.logits, v.logitsErr
}

func (v *Verifier) runForwards() (*logitsResult, error) {
	r := &logitsResult{}
	b := v.opts.Batch
	total := 3 + numerics.SpreadRuns
	ref, err := v.referenceModel()
	if err != nil {
		return nil, err
	}
	if r.hf, err = ref.Forward(b, model.ForwardOptions{}); err != nil {
		return nil, fmt.Errorf("%s: HF forward: %w", v.ref.Name, err)
	}
	v.progress(1, total, "forward passes")
	base, err := ref.Forward(b, model.ForwardOptions{Compute: model.ComputeFloat})
	if err != nil {
		return nil, fmt.Errorf("%s: HF forward (float path): %w", v.ref.Name, err)
	}
	v.progress(2, total, "forward passes")
	for run := uint64(1); run <= numerics.SpreadRuns; run++ {
		out, err := ref.Forward(b, model.ForwardOptions{Compute: model.ComputeFloat, Jitter: run})
		if err != nil {
			return nil, fmt.Errorf("%s: HF forward (jitter %d): %w", v.ref.Name, run, err)
		}
		d, _, _, _ := compare(out.Logits.Data, base.Logits.Data, b.T, int(v.cfg.VocabSize))
		r.spread = math.Max(r.spread, d)
		v.progress(2+int(run), total, "forward passes")
	}
	// The reference's embedding copy goes before the decoded model's comes.
	ref, base = nil, nil
	runtime.GC()
	debug.FreeOSMemory()
	r.bound = LogitsBound(r.spread)
	dec, err := v.decodedModel()
	if err != nil {
		r.decodeErr = err
		return r, nil
	}
	if r.gguf, err = dec.Forward(b, model.ForwardOptions{}); err != nil {
		r.decodeErr = err
		return r, nil
	}
	v.progress(total, total, "forward passes")
	r.relL2, r.worst, r.g, r.h = compare(r.gguf.Logits.Data, r.hf.Logits.Data, b.T, int(v.cfg.VocabSize))
	return r, nil
}

// compare is the relative L2 distance of a from b ([B,T,V]) and the
// [b,t,v] index of the largest difference with both values there.
func compare(a, b []float32, T, V int) (relL2 float64, worst [3]int, av, bv float32) {
	var diff, norm, most float64
	for i, want := range b {
		d := float64(a[i]) - float64(want)
		diff += d * d
		norm += float64(want) * float64(want)
		if math.Abs(d) > most || math.IsNaN(d) {
			most = math.Abs(d)
			worst = [3]int{i / (T * V), i / V % T, i % V}
			av, bv = a[i], want
		}
	}
	switch {
	case math.IsNaN(diff) || math.IsInf(diff, 0):
		return math.Inf(1), worst, av, bv
	case norm > 0:
		return math.Sqrt(diff / norm), worst, av, bv
	case diff > 0:
		return math.Inf(1), worst, av, bv
	}
	return 0, worst, av, bv
}

// LogitsSummary is the measured logits comparison, for reports.
type LogitsSummary struct {
	RelL2, Spread, Bound float64
	Batch                [2]int // B, T
}

// LogitsMeasured runs the logits comparison (once) and returns its figures;
// ok is false when the file could not be decoded into a model.
func (v *Verifier) LogitsMeasured() (LogitsSummary, bool, error) {
	r, err := v.forwards()
	if err != nil {
		return LogitsSummary{}, false, err
	}
	return LogitsSummary{r.relL2, r.spread, r.bound, [2]int{v.opts.Batch.B, v.opts.Batch.T}}, r.decodeErr == nil, nil
}

// Logits compares a model decoded from the file with the HF model on the
// fixed batch, the HF side run on the file's own F16-rounded embedding
// (and lm_head), both on the integer-kernel path. The bound is LogitsBound
// of the HF model's spread.
func (v *Verifier) Logits() ([]Finding, error) {
	r, err := v.forwards()
	if err != nil {
		return nil, err
	}
	if r.decodeErr != nil {
		return []Finding{finding(CheckLogits, "", "", "a model", "none", "no model could be decoded from %s: %v", v.fileName(), r.decodeErr)}, nil
	}
	if r.relL2 <= r.bound {
		return nil, nil
	}
	return []Finding{{Check: CheckLogits, Row: -1, Col: -1, Expected: fmt.Sprintf("relL2 <= %.3g", r.bound), Actual: fmt.Sprintf("relL2 %.3g", r.relL2),
		Message: fmt.Sprintf("logits of the model decoded from %s: relL2 %.3g from the HF model on the file's own rounded embedding, bound %.3g = max(%g, %g × spread %.3g); worst at [b=%d,t=%d,v=%d]: gguf %g, hf %g",
			v.fileName(), r.relL2, r.bound, numerics.EndToEndFloor, numerics.EndToEndSpreadFactor, r.spread, r.worst[0], r.worst[1], r.worst[2], r.g, r.h)}}, nil
}

// UntiedHead names an output.weight that differs from token_embd:
// bitnet.cpp's build_bitnet_158 uses token_embd as the lm_head of every
// model and ignores output.weight. The finding reports the measured logits
// error of doing so, on the fixed batch, against the file's own lm_head.
func (v *Verifier) UntiedHead() ([]Finding, error) {
	out, ok := v.file.Tensor("output.weight")
	if !ok {
		return nil, nil
	}
	emb, ok := v.file.Tensor("token_embd.weight")
	if !ok {
		return nil, nil // inventory names it
	}
	if emb.Type == out.Type && equalNe(emb.Ne, out.Ne) {
		a, err := v.file.Raw(emb.Name)
		if err != nil {
			return nil, err
		}
		b, err := v.file.Raw(out.Name)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(a, b) {
			return nil, nil // the same matrix: ignoring it changes nothing
		}
	}
	measured := "not measured: the file could not be run"
	r, err := v.forwards()
	if err != nil {
		return nil, err
	}
	if r.decodeErr == nil && equalNe(emb.Ne, out.Ne) {
		tok, err := v.file.Float32(emb.Name)
		if err != nil {
			return nil, err
		}
		H, V := int(v.cfg.HiddenSize), int(v.cfg.VocabSize)
		N := v.opts.Batch.B * v.opts.Batch.T
		logits := make([]float32, N*V)
		sgemm.NT(logits, r.gguf.FinalNorm.Data, tok, N, V, H, false)
		d, _, _, _ := compare(logits, r.gguf.Logits.Data, v.opts.Batch.T, V)
		measured = fmt.Sprintf("using token_embd instead moves the logits by relL2 %.3g from the file's own lm_head on the fixed batch [%d,%d]", d, v.opts.Batch.B, v.opts.Batch.T)
	}
	return []Finding{finding(CheckUntiedHead, "", "output.weight", "token_embd.weight as lm_head", "output.weight",
		"output.weight: the file is untied, but bitnet.cpp's build_bitnet_158 ignores output.weight and uses token_embd.weight as the lm_head of every model; %s", measured)}, nil
}
