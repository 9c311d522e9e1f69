package model

import (
	"fmt"
	"math"
	"slices"
)

// Compute selects how BitLinear layers are evaluated.
type Compute int

const (
	// ComputeKernels: act_quant to int8, packed ternary weights, integer
	// GEMM, one rescale per output (the default; fast).
	ComputeKernels Compute = iota
	// ComputeFloat: linear(act_quant(x), weight_quant(W)) in float32, as
	// torch computes it.
	ComputeFloat
	// ComputeFloat64 is the float path evaluated in float64 throughout
	// (weights widened from their storage, outputs rounded to float32 at
	// the end). Its rounding decisions in act_quant and weight_quant are
	// those of exact arithmetic, so it never flips a decision that a
	// float32 implementation got right only by luck; on golden cases
	// without near-ties it agrees with torch to ~3e-7. It has no SIMD
	// kernels: meant for golden comparisons at small scale.
	ComputeFloat64
)

func (c Compute) String() string {
	switch c {
	case ComputeKernels:
		return "kernels"
	case ComputeFloat:
		return "float"
	case ComputeFloat64:
		return "float64"
	}
	return fmt.Sprintf("Compute(%d)", int(c))
}

// ForwardOptions configure Forward.
type ForwardOptions struct {
	// Trace keeps the residual stream after the embedding and after every
	// layer in Output.Hidden.
	Trace   bool
	Compute Compute
	// Jitter, when non-zero, seeds an alternative correct run for spread
	// measurement: every quantizer input is multiplied by (1+ε), ε uniform
	// in ±2^-21. It runs the float path (or float64 with ComputeFloat64).
	Jitter uint64
}

// Output is the result of Forward.
type Output struct {
	Logits    *Tensor   // [B,T,V]
	Hidden    []*Tensor // L+1 tensors [B,T,H] (hidden.0 .. hidden.L), with Trace
	FinalNorm *Tensor   // [B,T,H], after model.norm
}

// checkBatch rejects batches the model cannot run.
func (m *Model) checkBatch(b Batch) error {
	if b.B <= 0 || b.T <= 0 {
		return fmt.Errorf("input_ids: empty batch (B=%d, T=%d)", b.B, b.T)
	}
	if len(b.IDs) != b.B*b.T {
		return fmt.Errorf("input_ids: expected B*T = %d*%d = %d ids, got %d", b.B, b.T, b.B*b.T, len(b.IDs))
	}
	if int64(b.T) > m.cfg.MaxPositionEmbeddings {
		return fmt.Errorf("input_ids: sequence length T=%d exceeds max_position_embeddings %d", b.T, m.cfg.MaxPositionEmbeddings)
	}
	for i, id := range b.IDs {
		if id < 0 || int64(id) >= m.cfg.VocabSize {
			return fmt.Errorf("input_ids[%d,%d] = %d: outside vocab [0, %d)", i/b.T, i%b.T, id, m.cfg.VocabSize)
		}
	}
	return nil
}

// callQuirks is the model's quirks with the jitter seed of one call.
func (m *Model) callQuirks(jitter uint64) *quirks {
	q := m.quirks
	q.jitter = jitter
	return &q
}

// network builds the float32 network over the model's parameters.
func (m *Model) network(B, T int, compute Compute, jitter uint64) (*network[float32], error) {
	if err := checkCompute(compute); err != nil {
		return nil, err
	}
	q := m.callQuirks(jitter)
	if q.forcesFloat() {
		compute = ComputeFloat
	}
	if compute == ComputeKernels {
		if err := m.prepareTernary(); err != nil {
			return nil, err
		}
	}
	embed := m.byName["model.embed_tokens.weight"]
	head := embed
	if !m.cfg.TieWordEmbeddings {
		head = m.byName["lm_head.weight"]
	}
	scratch := &linearScratch{}
	net := &network[float32]{
		d:         configDims(m.cfg, B, T),
		embed:     embed,
		head:      head,
		tied:      m.cfg.TieWordEmbeddings,
		finalNorm: m.byName["model.norm.weight"].Float32(),
		layer:     func(i int) (*layerWeights[float32], error) { return m.layerWeights(i, compute, scratch, q) },
		layers:    int(m.cfg.NumHiddenLayers),
		names:     layerName,
		q:         q,
	}
	if m.stream != nil {
		buf := m.stream.get()
		net.layer = func(i int) (*layerWeights[float32], error) {
			if err := m.checkLayer(i); err != nil {
				return nil, err
			}
			ps, err := buf.load(m, i)
			if err != nil {
				return nil, err
			}
			return layerWeightsOf(ps, compute, scratch, buf.tern, q)
		}
		net.checkpoint = true
		net.done = func() { m.stream.put(buf) }
	}
	return net, nil
}

func (m *Model) checkLayer(i int) error {
	if i < 0 || int64(i) >= m.cfg.NumHiddenLayers {
		return fmt.Errorf("layer: index %d outside [0, %d)", i, m.cfg.NumHiddenLayers)
	}
	return nil
}

func checkCompute(c Compute) error {
	switch c {
	case ComputeKernels, ComputeFloat, ComputeFloat64:
		return nil
	}
	return fmt.Errorf("compute: expected ComputeKernels, ComputeFloat or ComputeFloat64, got %v", c)
}

// float64Param views a parameter as a float64 matrix [shape[0], rest].
type float64Param struct{ p *Param }

func (w float64Param) rowsInto(dst []float64, lo, hi int) {
	cols := Elements(w.p.shape[1:])
	tmp := make([]float32, (hi-lo)*cols)
	w.p.rowsInto(tmp, lo, hi)
	widen(dst, tmp)
}

func (w float64Param) dense() []float64 { return nil }

func widen(dst []float64, src []float32) {
	for i, v := range src {
		dst[i] = float64(v)
	}
}

func widened(src []float32) []float64 {
	dst := make([]float64, len(src))
	widen(dst, src)
	return dst
}

func narrowed(src []float64) []float32 {
	dst := make([]float32, len(src))
	for i, v := range src {
		dst[i] = float32(v)
	}
	return dst
}

// network64 builds the float64 network (ComputeFloat64) over the model's
// parameters, widening each layer's weights when it runs.
func (m *Model) network64(B, T int, jitter uint64) *network[float64] {
	q := m.callQuirks(jitter)
	embed := m.byName["model.embed_tokens.weight"]
	head := embed
	if !m.cfg.TieWordEmbeddings {
		head = m.byName["lm_head.weight"]
	}
	return &network[float64]{
		d:         configDims(m.cfg, B, T),
		embed:     float64Param{embed},
		head:      float64Param{head},
		tied:      m.cfg.TieWordEmbeddings,
		finalNorm: widened(m.byName["model.norm.weight"].Float32()),
		layer:     func(i int) (*layerWeights[float64], error) { return m.layerWeights64(i, q) },
		layers:    int(m.cfg.NumHiddenLayers),
		names:     layerName,
		q:         q,
	}
}

// layerWeights64 widens layer i's weights to float64. Offline linears keep
// their ternary values and scale; online ones are quantized in float64.
func (m *Model) layerWeights64(i int, q *quirks) (*layerWeights[float64], error) {
	if i < 0 || int64(i) >= m.cfg.NumHiddenLayers {
		return nil, fmt.Errorf("layer: index %d outside [0, %d)", i, m.cfg.NumHiddenLayers)
	}
	w := &layerWeights[float64]{}
	for slot := 0; slot < slotsPerLayer; slot++ {
		p := m.byName[layerName(i, slot)]
		if p.lazy != nil {
			// Materialised as the float32 path does (an offline linear of
			// a source stays offline).
			tmp := &Param{spec: p.spec, shape: p.shape}
			if err := p.lazy.fill(tmp, nil); err != nil {
				return nil, err
			}
			p = tmp
		}
		if p.spec.Kind == KindNorm {
			w.norms[slot] = widened(p.Float32())
			continue
		}
		out, in := p.shape[0], p.shape[1]
		if p.offline() {
			tw := p.tern
			wq := make([]float64, out*in)
			for j, v := range tw.t.Unpack() {
				if tw.multiplies {
					wq[j] = float64(v) * float64(tw.scale)
				} else {
					wq[j] = float64(v) / float64(tw.scale)
				}
			}
			w.linears[slot] = &floatLinear[float64]{out: out, in: in, wq: wq, q: q}
			continue
		}
		w.linears[slot] = newFloatLinear(widened(p.Float32()), out, in, q)
	}
	return w, nil
}

// layerWeights prepares layer i's weights for the given compute path.
// scratch is the network's working memory for kernel linears.
func (m *Model) layerWeights(i int, compute Compute, scratch *linearScratch, q *quirks) (*layerWeights[float32], error) {
	if err := m.checkLayer(i); err != nil {
		return nil, err
	}
	var ps [slotsPerLayer]*Param
	for slot := range ps {
		ps[slot] = m.byName[layerName(i, slot)]
	}
	return layerWeightsOf(ps, compute, scratch, nil, q)
}

// layerWeightsOf prepares one layer's weights, given by slot; tern is
// scratch space for quantizing a linear (nil: allocate).
func layerWeightsOf(ps [slotsPerLayer]*Param, compute Compute, scratch *linearScratch, tern []int8, q *quirks) (*layerWeights[float32], error) {
	w := &layerWeights[float32]{}
	for slot, p := range ps {
		if p.spec.Kind == KindNorm {
			w.norms[slot] = p.Float32()
			continue
		}
		out, in := p.shape[0], p.shape[1]
		switch {
		case compute == ComputeKernels && !q.forcesFloat():
			tw, err := p.ternaryWith(tern)
			if err != nil {
				return nil, err
			}
			w.linears[slot] = kernelLinear{w: tw, s: scratch}
		case p.offline():
			w.linears[slot] = &floatLinear[float32]{out: out, in: in, wq: p.tern.dequantized(), q: q}
		default:
			w.linears[slot] = newFloatLinear(p.Float32(), out, in, q)
		}
	}
	return w, nil
}

func toTensor(data []float32, shape ...int) *Tensor {
	return &Tensor{Shape: shape, Data: data}
}

// Forward runs the model on a batch (teacher forcing, positions 0..T-1).
func (m *Model) Forward(b Batch, opts ForwardOptions) (*Output, error) {
	if err := m.checkBatch(b); err != nil {
		return nil, err
	}
	H, V := int(m.cfg.HiddenSize), int(m.cfg.VocabSize)
	if opts.Compute == ComputeFloat64 {
		r, err := m.network64(b.B, b.T, opts.Jitter).forward(b.IDs, false)
		if err != nil {
			return nil, err
		}
		out := &Output{
			Logits:    toTensor(narrowed(r.logits), b.B, b.T, V),
			FinalNorm: toTensor(narrowed(r.finalNorm), b.B, b.T, H),
		}
		if opts.Trace {
			for _, h := range r.hidden {
				out.Hidden = append(out.Hidden, toTensor(narrowed(h), b.B, b.T, H))
			}
		}
		return out, nil
	}
	net, err := m.network(b.B, b.T, opts.Compute, opts.Jitter)
	if err != nil {
		return nil, err
	}
	r, err := net.forward(b.IDs, false)
	net.release()
	if err != nil {
		return nil, err
	}
	out := &Output{
		Logits:    toTensor(r.logits, b.B, b.T, V),
		FinalNorm: toTensor(r.finalNorm, b.B, b.T, H),
	}
	if opts.Trace {
		for _, h := range r.hidden {
			out.Hidden = append(out.Hidden, toTensor(h, b.B, b.T, H))
		}
	}
	return out, nil
}

// Embed is the embedding lookup: hidden.0 [B,T,H].
func (m *Model) Embed(b Batch) (*Tensor, error) {
	if err := m.checkBatch(b); err != nil {
		return nil, err
	}
	H := int(m.cfg.HiddenSize)
	x := make([]float32, b.B*b.T*H)
	embeddingForward[float32](x, m.byName["model.embed_tokens.weight"], b.IDs, H, &m.quirks)
	return toTensor(x, b.B, b.T, H), nil
}

// checkHidden checks that x is [B,T,H] with a usable T.
func (m *Model) checkHidden(what string, x *Tensor) (B, T int, err error) {
	H := int(m.cfg.HiddenSize)
	if x == nil || len(x.Shape) != 3 || x.Shape[2] != H || x.Shape[0] <= 0 || x.Shape[1] <= 0 || len(x.Data) != Elements(x.Shape) {
		got := "nil"
		if x != nil {
			got = fmt.Sprintf("%s with %d values", ShapeString(x.Shape), len(x.Data))
		}
		return 0, 0, fmt.Errorf("%s: expected a non-empty [B,T,%d] tensor, got %s", what, H, got)
	}
	if int64(x.Shape[1]) > m.cfg.MaxPositionEmbeddings {
		return 0, 0, fmt.Errorf("%s: sequence length T=%d exceeds max_position_embeddings %d", what, x.Shape[1], m.cfg.MaxPositionEmbeddings)
	}
	return x.Shape[0], x.Shape[1], nil
}

// Layer runs decoder layer i on x [B,T,H] at positions 0..T-1.
func (m *Model) Layer(i int, x *Tensor, compute Compute) (*Tensor, error) {
	B, T, err := m.checkHidden(fmt.Sprintf("layer %d input", i), x)
	if err != nil {
		return nil, err
	}
	if i < 0 || int64(i) >= m.cfg.NumHiddenLayers {
		return nil, fmt.Errorf("layer: index %d outside [0, %d)", i, m.cfg.NumHiddenLayers)
	}
	if compute == ComputeFloat64 {
		net := m.network64(B, T, 0)
		w, err := net.layer(i)
		if err != nil {
			return nil, err
		}
		out := make([]float64, len(x.Data))
		layerForward(out, widened(x.Data), w, net.d, newRopeTable[float64](T, net.d.hd, net.d.theta), net.q, &bufferPool[float64]{}, layerTap[float64]{})
		return toTensor(narrowed(out), x.Shape...), nil
	}
	net, err := m.network(B, T, compute, 0)
	if err != nil {
		return nil, err
	}
	w, err := net.layer(i)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(x.Data))
	layerForward(out, x.Data, w, net.d, newRopeTable[float32](T, net.d.hd, net.d.theta), net.q, &bufferPool[float32]{}, layerTap[float32]{})
	return toTensor(out, x.Shape...), nil
}

// FinalNorm applies model.norm to x [B,T,H].
func (m *Model) FinalNorm(x *Tensor) (*Tensor, error) {
	B, T, err := m.checkHidden("final norm input", x)
	if err != nil {
		return nil, err
	}
	H := int(m.cfg.HiddenSize)
	out, rstd := make([]float32, len(x.Data)), make([]float32, B*T)
	rmsNormForward(out, rstd, x.Data, m.byName["model.norm.weight"].Float32(), B*T, H, m.cfg.RMSNormEps, &m.quirks)
	return toTensor(out, x.Shape...), nil
}

// Head computes logits [B,T,V] from the final-normed hidden state [B,T,H].
func (m *Model) Head(x *Tensor) (*Tensor, error) {
	B, T, err := m.checkHidden("lm_head input", x)
	if err != nil {
		return nil, err
	}
	net, err := m.network(B, T, ComputeFloat, 0)
	if err != nil {
		return nil, err
	}
	V := int(m.cfg.VocabSize)
	logits := make([]float32, B*T*V)
	headForward(logits, x.Data, net.head, B*T, V, net.d.H, net.q)
	return toTensor(logits, B, T, V), nil
}

// CrossEntropy is the mean next-token cross-entropy of logits[:, :-1]
// against ids[:, 1:], in float64.
func CrossEntropy(logits *Tensor, b Batch) (float64, error) {
	if b.B <= 0 || b.T < 2 || len(b.IDs) != b.B*b.T {
		return 0, fmt.Errorf("input_ids: need B ≥ 1 rows of T ≥ 2 tokens (B*T ids), got B=%d, T=%d with %d ids", b.B, b.T, len(b.IDs))
	}
	if logits == nil || len(logits.Shape) != 3 || logits.Shape[0] != b.B || logits.Shape[1] != b.T || logits.Shape[2] <= 0 || len(logits.Data) != Elements(logits.Shape) {
		got := "nil"
		if logits != nil {
			got = ShapeString(logits.Shape)
		}
		return 0, fmt.Errorf("logits: expected [%d,%d,V], got %s", b.B, b.T, got)
	}
	V := logits.Shape[2]
	for i, id := range b.IDs {
		if id < 0 || int(id) >= V {
			return 0, fmt.Errorf("input_ids[%d,%d] = %d: outside vocab [0, %d)", i/b.T, i%b.T, id, V)
		}
	}
	loss := crossEntropyForward[float32](nil, logits.Data, b.IDs, b.B, b.T, V, &quirks{})
	if math.IsNaN(loss) {
		return 0, fmt.Errorf("logits: cross-entropy is NaN (non-finite logits)")
	}
	return loss, nil
}

// GradOptions configure Gradients.
type GradOptions struct {
	// Keep returns every gradient in GradResult.Grads.
	Keep bool
	// Visit, when set, receives each parameter's complete gradient exactly
	// once, as soon as it is final. The slice may be reused after Visit
	// returns; copy what you keep.
	Visit func(name string, grad []float32)
	// Compute is the forward path the gradients are taken through;
	// ComputeKernels by default. The backward pass runs in float32, or in
	// float64 with ComputeFloat64.
	Compute Compute
	// Jitter seeds an alternative correct run, as ForwardOptions.Jitter.
	Jitter uint64
}

// GradResult is the result of Gradients.
type GradResult struct {
	Loss  float64
	Grads map[string]*Tensor // with Keep: HF name → gradient, shaped like the parameter
}

// Gradients computes the mean next-token cross-entropy and its gradient with
// respect to every parameter, straight-through both quantizers. Weight
// gradients are streamed layer by layer, so only Keep holds them all.
func (m *Model) Gradients(b Batch, opts GradOptions) (*GradResult, error) {
	if err := m.checkBatch(b); err != nil {
		return nil, err
	}
	if b.T < 2 {
		return nil, fmt.Errorf("input_ids: the next-token loss needs T ≥ 2, got T=%d", b.T)
	}
	res := &GradResult{}
	if opts.Keep {
		res.Grads = make(map[string]*Tensor)
	}
	visit := func(name string, grad []float32) {
		if opts.Visit != nil {
			opts.Visit(name, grad)
		}
		if opts.Keep {
			res.Grads[name] = toTensor(append([]float32(nil), grad...), m.byName[name].Shape()...)
		}
	}
	var err error
	if res.Loss, _, err = m.backprop(b, opts, nil, visit); err != nil {
		return nil, err
	}
	return res, nil
}

// backprop runs forward and backward on the path opts selects, handing
// each parameter's gradient (as float32) to visit. With golden values it
// teacher-forces every op (teacher.go) and also returns what each op
// computed.
func (m *Model) backprop(b Batch, opts GradOptions, golden map[string][]float32, visit func(name string, grad []float32)) (loss float64, computed map[string][]float32, err error) {
	if opts.Compute == ComputeFloat64 {
		net := m.network64(b.B, b.T, opts.Jitter)
		if golden != nil {
			net.teacher = &teacher[float64]{golden: golden, computed: map[string][]float32{}}
			computed = net.teacher.computed
		}
		var buf []float32
		loss, err = net.gradients(b.IDs, func(name string, grad []float64) {
			buf = scratch(buf, len(grad))
			for i, v := range grad {
				buf[i] = float32(v)
			}
			visit(name, buf)
		})
		return loss, computed, err
	}
	net, err := m.network(b.B, b.T, opts.Compute, opts.Jitter)
	if err != nil {
		return 0, nil, err
	}
	defer net.release()
	if golden != nil {
		net.teacher = &teacher[float32]{golden: golden, computed: map[string][]float32{}}
		computed = net.teacher.computed
	}
	loss, err = net.gradients(b.IDs, visit)
	return loss, computed, err
}

// BitLinear is one quantized linear layer on the float path:
// y[N,out] = linear(act_quant(x[N,in]), weight_quant(w[out,in])).
func BitLinear(x, w *Tensor) (*Tensor, error) {
	return bitLinear(x, w, &quirks{})
}

func bitLinear(x, w *Tensor, q *quirks) (*Tensor, error) {
	N, out, in, err := checkBitLinear(x, w)
	if err != nil {
		return nil, err
	}
	y := make([]float32, N*out)
	newFloatLinear(w.Data, out, in, q).forward(y, x.Data, N)
	return toTensor(y, N, out), nil
}

// BitLinearBackward is BitLinear's straight-through backward pass for the
// upstream gradient gradY[N,out]: gradX = gradY·weight_quant(w) and
// gradW = gradYᵀ·act_quant(x).
func BitLinearBackward(x, w, gradY *Tensor) (gradX, gradW *Tensor, err error) {
	return bitLinearBackward(x, w, gradY, &quirks{})
}

func bitLinearBackward(x, w, gradY *Tensor, q *quirks) (gradX, gradW *Tensor, err error) {
	N, out, in, err := checkBitLinear(x, w)
	if err != nil {
		return nil, nil, err
	}
	if gradY == nil || !slices.Equal(gradY.Shape, []int{N, out}) || len(gradY.Data) != N*out {
		got := "nil"
		if gradY != nil {
			got = ShapeString(gradY.Shape)
		}
		return nil, nil, fmt.Errorf("bitlinear grad_y: expected shape %s, got %s", ShapeString([]int{N, out}), got)
	}
	gx, gw := make([]float32, N*in), make([]float32, out*in)
	newFloatLinear(w.Data, out, in, q).backward(gx, gw, x.Data, gradY.Data, N)
	return toTensor(gx, N, in), toTensor(gw, out, in), nil
}

func checkBitLinear(x, w *Tensor) (N, out, in int, err error) {
	if w == nil || len(w.Shape) != 2 || w.Shape[0] <= 0 || w.Shape[1] <= 0 || len(w.Data) != Elements(w.Shape) {
		got := "nil"
		if w != nil {
			got = fmt.Sprintf("%s with %d values", ShapeString(w.Shape), len(w.Data))
		}
		return 0, 0, 0, fmt.Errorf("bitlinear weight: expected a non-empty [out,in] matrix, got %s", got)
	}
	out, in = w.Shape[0], w.Shape[1]
	if x == nil || len(x.Shape) != 2 || x.Shape[1] != in || x.Shape[0] <= 0 || len(x.Data) != Elements(x.Shape) {
		got := "nil"
		if x != nil {
			got = fmt.Sprintf("%s with %d values", ShapeString(x.Shape), len(x.Data))
		}
		return 0, 0, 0, fmt.Errorf("bitlinear x: expected a non-empty [N,%d] matrix, got %s", in, got)
	}
	return x.Shape[0], out, in, nil
}
