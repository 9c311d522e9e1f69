package model

import (
	"fmt"

	"github.com/tritter-ai/conformance/internal/ops"
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

// network builds the float32 network over the model's parameters. r is
// the quantizers' rounding (ForwardOptions.Jitter).
func (m *Model) network(B, T int, compute Compute, r ops.Rounding) (*network[float32], error) {
	if err := checkCompute(compute); err != nil {
		return nil, err
	}
	if m.variant.FloatPath || !r.Reference() {
		compute = ComputeFloat // the integer kernels round as the reference does
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
	table := ops.TableOf[float32](m.variant)
	scratch := &linearScratch{}
	net := &network[float32]{
		d:         configDims(m.cfg, B, T),
		ops:       table,
		embed:     paramMatrix{embed},
		head:      paramMatrix{head},
		tied:      m.cfg.TieWordEmbeddings,
		finalNorm: m.byName["model.norm.weight"].Float32(),
		layer: func(i int) (*layerWeights[float32], error) {
			return m.layerWeights(i, compute, &table, r, scratch)
		},
		layers: int(m.cfg.NumHiddenLayers),
		names:  layerName,
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
			return layerWeightsOf(ps, compute, &table, r, scratch, buf.tern)
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

// paramMatrix views a parameter as a float32 matrix [shape[0], rest].
type paramMatrix struct{ p *Param }

func (w paramMatrix) RowsInto(dst []float32, lo, hi int) { w.p.rowsInto(dst, lo, hi) }
func (w paramMatrix) Dense() []float32                   { return w.p.dense() }

// float64Param views a parameter as a float64 matrix [shape[0], rest].
type float64Param struct{ p *Param }

func (w float64Param) RowsInto(dst []float64, lo, hi int) {
	cols := Elements(w.p.shape[1:])
	tmp := make([]float32, (hi-lo)*cols)
	w.p.rowsInto(tmp, lo, hi)
	widen(dst, tmp)
}

func (w float64Param) Dense() []float64 { return nil }

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
func (m *Model) network64(B, T int, r ops.Rounding) *network[float64] {
	embed := m.byName["model.embed_tokens.weight"]
	head := embed
	if !m.cfg.TieWordEmbeddings {
		head = m.byName["lm_head.weight"]
	}
	table := ops.TableOf[float64](m.variant)
	return &network[float64]{
		d:         configDims(m.cfg, B, T),
		ops:       table,
		embed:     float64Param{embed},
		head:      float64Param{head},
		tied:      m.cfg.TieWordEmbeddings,
		finalNorm: widened(m.byName["model.norm.weight"].Float32()),
		layer:     func(i int) (*layerWeights[float64], error) { return m.layerWeights64(i, &table, r) },
		layers:    int(m.cfg.NumHiddenLayers),
		names:     layerName,
	}
}

// layerWeights64 widens layer i's weights to float64. Offline linears keep
// their ternary values and scale; online ones are quantized in float64.
func (m *Model) layerWeights64(i int, table *ops.Table[float64], r ops.Rounding) (*layerWeights[float64], error) {
	if err := m.checkLayer(i); err != nil {
		return nil, err
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
			w.linears[slot] = table.QuantizedLinear(wq, out, in, r)
			continue
		}
		w.linears[slot] = table.Linear(widened(p.Float32()), out, in, r)
	}
	return w, nil
}

// layerWeights prepares layer i's weights for the given compute path.
// scratch is the network's working memory for kernel linears.
func (m *Model) layerWeights(i int, compute Compute, table *ops.Table[float32], r ops.Rounding, scratch *linearScratch) (*layerWeights[float32], error) {
	if err := m.checkLayer(i); err != nil {
		return nil, err
	}
	var ps [slotsPerLayer]*Param
	for slot := range ps {
		ps[slot] = m.byName[layerName(i, slot)]
	}
	return layerWeightsOf(ps, compute, table, r, scratch, nil)
}

// layerWeightsOf prepares one layer's weights, given by slot: the integer
// kernels' linears for ComputeKernels, else the table's float linears.
// tern is scratch space for quantizing a linear (nil: allocate).
func layerWeightsOf(ps [slotsPerLayer]*Param, compute Compute, table *ops.Table[float32], r ops.Rounding, scratch *linearScratch, tern []int8) (*layerWeights[float32], error) {
	w := &layerWeights[float32]{}
	for slot, p := range ps {
		if p.spec.Kind == KindNorm {
			w.norms[slot] = p.Float32()
			continue
		}
		out, in := p.shape[0], p.shape[1]
		switch {
		case compute == ComputeKernels:
			tw, err := p.ternaryWith(tern)
			if err != nil {
				return nil, err
			}
			w.linears[slot] = kernelLinear{w: tw, s: scratch}
		case p.offline():
			w.linears[slot] = table.QuantizedLinear(p.tern.dequantized(), out, in, r)
		default:
			w.linears[slot] = table.Linear(p.Float32(), out, in, r)
		}
	}
	return w, nil
}
