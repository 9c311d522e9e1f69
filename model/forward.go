package model

import (
	"fmt"
	"math"

	"github.com/tritter-ai/conformance/internal/ops"
)

// ForwardOptions configure Forward.
type ForwardOptions struct {
	// Trace keeps the residual stream after the embedding and after every
	// layer in Output.Hidden.
	Trace   bool
	Compute Compute
	// Jitter, when non-zero, seeds an alternative correct run for spread
	// measurement, a rounding policy and not a bug (internal/ops,
	// Rounding): every quantizer input is multiplied by (1+ε), ε uniform
	// in ±2^-21, and near-ties are decided at random. It runs the float
	// path (or float64 with ComputeFloat64).
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
		r, err := m.network64(b.B, b.T, ops.Rounding{Seed: opts.Jitter}).forward(b.IDs, false)
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
	net, err := m.network(b.B, b.T, opts.Compute, ops.Rounding{Seed: opts.Jitter})
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
	embedding := ops.TableOf[float32](m.variant).Embedding
	embedding.Forward(x, paramMatrix{m.byName["model.embed_tokens.weight"]}, b.IDs, H)
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
		net := m.network64(B, T, ops.Rounding{})
		w, err := net.layer(i)
		if err != nil {
			return nil, err
		}
		out := make([]float64, len(x.Data))
		net.layerForward(out, widened(x.Data), w, ops.NewRopeTable[float64](T, net.d.hd, net.d.theta), &bufferPool[float64]{}, layerObserver[float64]{})
		return toTensor(narrowed(out), x.Shape...), nil
	}
	net, err := m.network(B, T, compute, ops.Rounding{})
	if err != nil {
		return nil, err
	}
	w, err := net.layer(i)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(x.Data))
	net.layerForward(out, x.Data, w, ops.NewRopeTable[float32](T, net.d.hd, net.d.theta), &bufferPool[float32]{}, layerObserver[float32]{})
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
	finalNorm := ops.TableOf[float32](m.variant).FinalNorm
	finalNorm.Forward(out, rstd, x.Data, m.byName["model.norm.weight"].Float32(), B*T, H, m.cfg.RMSNormEps)
	return toTensor(out, x.Shape...), nil
}

// Head computes logits [B,T,V] from the final-normed hidden state [B,T,H].
func (m *Model) Head(x *Tensor) (*Tensor, error) {
	B, T, err := m.checkHidden("lm_head input", x)
	if err != nil {
		return nil, err
	}
	net, err := m.network(B, T, ComputeFloat, ops.Rounding{})
	if err != nil {
		return nil, err
	}
	V := int(m.cfg.VocabSize)
	logits := make([]float32, B*T*V)
	net.ops.Head.Forward(logits, x.Data, net.head, B*T, V, net.d.H)
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
	loss := ops.CrossEntropy[float32](nil, logits.Data, b.IDs, b.B, b.T, V)
	if math.IsNaN(loss) {
		return 0, fmt.Errorf("logits: cross-entropy is NaN (non-finite logits)")
	}
	return loss, nil
}
