package numerics

import (
	"fmt"
	"strings"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// ModelCaseChecks lists every numerics check of a model case in
// computation order: the forward op checks, the backward op checks (v2
// only, since they need the golden gradient at every trace point), then
// the end-to-end checks.
func ModelCaseChecks(c *golden.Case) []Check {
	b := checkList{c: c, d: dimsOf(c)}
	b.forwardOps()
	if c.Version >= 2 {
		b.backwardOps()
	}
	b.endToEnd()
	return b.checks
}

// checkList builds the checks of one case.
type checkList struct {
	c      *golden.Case
	d      caseDims
	checks []Check
}

func (b *checkList) node(name string) *model.Tensor { return b.c.Nodes[name] }

// grad returns the golden gradient of a node or, for a parameter name,
// of the parameter.
func (b *checkList) grad(name string) *model.Tensor {
	if g, ok := b.c.NodeGrads[name]; ok {
		return g
	}
	return b.c.Grads[name]
}

func (b *checkList) param(name string) []float32 { return b.c.Params[name].Data }

func layerParam(i int, suffix string) string { return fmt.Sprintf("model.layers.%d.%s", i, suffix) }

// op adds a per-element check: tensor is compared with what the model
// computed for it under teacher forcing (or, for a parameter gradient,
// the gradient it computed), within bound(). The bound is computed on
// first use, from golden tensors only.
func (b *checkList) op(stage Stage, layer int, op, inputs, tensor string, bound func() []float64) {
	where := "model"
	if layer >= 0 {
		where = fmt.Sprintf("layer %d", layer)
	}
	name := fmt.Sprintf("%s %s from golden %s → %s", where, op, inputs, tensor)
	expected := b.expected(tensor)
	b.checks = append(b.checks, Check{
		Name: name, Layer: layer, Op: op, Tensor: tensor, Stage: stage,
		run: func(r *caseRun) (Measurement, error) {
			tr, err := r.teacherForced()
			if err != nil {
				return Measurement{}, err
			}
			actual := tr.Computed[tensor]
			if g, ok := tr.Grads[strings.TrimPrefix(tensor, "grad.")]; ok && strings.HasPrefix(tensor, "grad.") {
				actual = g
			}
			return compareElements(actual, expected, bound())
		},
	})
}

// expected finds a golden tensor by its file name.
func (b *checkList) expected(tensor string) *model.Tensor {
	if name, ok := strings.CutPrefix(tensor, "grad."); ok {
		return b.grad(name)
	}
	return b.node(tensor)
}

func (b *checkList) forwardOps() {
	d, c := b.d, b.c
	N, H := d.N, d.H
	b.op(StageForward, -1, "embedding lookup", "input_ids", "hidden.0", func() []float64 {
		return make([]float64, N*H) // a lookup: exact
	})
	for i := 0; i < int(c.Config.NumHiddenLayers); i++ {
		x, next := golden.HiddenName(i), golden.HiddenName(i+1)
		if c.Version < 2 {
			b.wholeLayer(i)
			continue
		}
		t := func(p string) string { return golden.TraceName(i, p) }
		v := func(p string) []float32 { return b.node(t(p)).Data }
		b.op(StageForward, i, "input_layernorm (RMSNorm)", x, t("attn_norm"), func() []float64 {
			return rmsNormBound(b.node(x).Data, b.param(layerParam(i, "input_layernorm.weight")), N, H, d.eps)
		})
		for _, proj := range []struct {
			point, param string
			out          int
		}{{"q", "self_attn.q_proj.weight", d.Q}, {"k", "self_attn.k_proj.weight", d.KV}, {"v", "self_attn.v_proj.weight", d.KV}} {
			b.op(StageForward, i, proj.point+"_proj (BitLinear)", "attn_norm", t(proj.point), func() []float64 {
				return bitLinearBound(v("attn_norm"), b.param(layerParam(i, proj.param)), N, proj.out, H)
			})
		}
		b.op(StageForward, i, "attention (RoPE, causal softmax)", "q,k,v", t("attn"), func() []float64 {
			return attentionBound(v("q"), v("k"), v("v"), d.attn, d.theta)
		})
		b.op(StageForward, i, "attn_sub_norm (RMSNorm)", "attn", t("attn_sub_norm"), func() []float64 {
			return rmsNormBound(v("attn"), b.param(layerParam(i, "self_attn.attn_sub_norm.weight")), N, d.Q, d.eps)
		})
		b.op(StageForward, i, "o_proj (BitLinear)", "attn_sub_norm", t("o"), func() []float64 {
			return bitLinearBound(v("attn_sub_norm"), b.param(layerParam(i, "self_attn.o_proj.weight")), N, H, d.Q)
		})
		b.op(StageForward, i, "attention residual (x + o)", x+",o", t("h"), func() []float64 {
			return sumBound([][]float32{b.node(x).Data, v("o")})
		})
		b.op(StageForward, i, "post_attention_layernorm (RMSNorm)", "h", t("ffn_norm"), func() []float64 {
			return rmsNormBound(v("h"), b.param(layerParam(i, "post_attention_layernorm.weight")), N, H, d.eps)
		})
		for _, proj := range []struct{ point, param string }{{"gate", "mlp.gate_proj.weight"}, {"up", "mlp.up_proj.weight"}} {
			b.op(StageForward, i, proj.point+"_proj (BitLinear)", "ffn_norm", t(proj.point), func() []float64 {
				return bitLinearBound(v("ffn_norm"), b.param(layerParam(i, proj.param)), N, d.I, H)
			})
		}
		b.op(StageForward, i, "relu²(gate)·up", "gate,up", t("act"), func() []float64 {
			return reluSqBound(v("gate"), v("up"))
		})
		b.op(StageForward, i, "ffn_sub_norm (RMSNorm)", "act", t("ffn_sub_norm"), func() []float64 {
			return rmsNormBound(v("act"), b.param(layerParam(i, "mlp.ffn_sub_norm.weight")), N, d.I, d.eps)
		})
		b.op(StageForward, i, "down_proj (BitLinear)", "ffn_sub_norm", t("down"), func() []float64 {
			return bitLinearBound(v("ffn_sub_norm"), b.param(layerParam(i, "mlp.down_proj.weight")), N, H, d.I)
		})
		b.op(StageForward, i, "MLP residual (h + down)", "h,down", next, func() []float64 {
			return sumBound([][]float32{v("h"), v("down")})
		})
	}
	L := int(c.Config.NumHiddenLayers)
	last := golden.HiddenName(L)
	b.op(StageForward, -1, "final norm (model.norm, RMSNorm)", last, "final_norm", func() []float64 {
		return rmsNormBound(b.node(last).Data, b.param("model.norm.weight"), N, H, d.eps)
	})
	b.op(StageForward, -1, "lm_head (unquantized)", "final_norm", "logits", func() []float64 {
		bound := absMatMul("NT", b.node("final_norm").Data, b.param(b.headName()), N, d.V, H)
		return scaled(bound, 2*gamma(H+1))
	})
	b.loss()
}

// headName is the parameter the lm_head multiplies by.
func (b *checkList) headName() string {
	if b.c.Config.TieWordEmbeddings {
		return "model.embed_tokens.weight"
	}
	return "lm_head.weight"
}

// wholeLayer is a v1 case's layer check: teacher-forced from golden
// hidden.i, so flips within the layer can cascade through its ops, and the
// bound is end-to-end style, from the spread of hidden.{i+1}.
func (b *checkList) wholeLayer(i int) {
	x, next := golden.HiddenName(i), golden.HiddenName(i+1)
	expected := b.node(next)
	b.checks = append(b.checks, Check{
		Name:  fmt.Sprintf("layer %d whole layer (v1 case: no op trace) from golden %s → %s", i, x, next),
		Layer: i, Op: "whole layer", Tensor: next, Stage: StageForward,
		run: func(r *caseRun) (Measurement, error) {
			tr, err := r.teacherForced()
			if err != nil {
				return Measurement{}, err
			}
			spread, err := r.spread(next)
			if err != nil {
				return Measurement{}, err
			}
			return compareEndToEnd(tr.Computed[next], expected, spread)
		},
	})
}

// loss compares the cross-entropy of the golden logits, a scalar.
func (b *checkList) loss() {
	c, d := b.c, b.d
	b.checks = append(b.checks, Check{
		Name: "model cross-entropy loss from golden logits → loss", Layer: -1, Op: "cross-entropy loss", Tensor: "loss", Stage: StageForward,
		run: func(r *caseRun) (Measurement, error) {
			tr, err := r.teacherForced()
			if err != nil {
				return Measurement{}, err
			}
			_, bound := lossBound(c.Logits.Data, c.Batch.IDs, d.B, d.T, d.V)
			return compareElements(scalar(tr.Loss), scalar(c.Loss), []float64{bound})
		},
	})
}

func scalar(v float64) *model.Tensor {
	return &model.Tensor{Shape: []int{}, Data: []float32{float32(v)}}
}

func scaled(b []float64, factor float64) []float64 {
	for i := range b {
		b[i] = b[i]*factor + tinyBound
	}
	return b
}

// bitLinearGrads registers the backward checks of BitLinears sharing one
// input: the summed input gradient, then each weight gradient.
func (b *checkList) bitLinearGrads(layer int, input, gradInput string, projs []string, params []string, upstream []string, out []int, in int) {
	d := b.d
	var gradW [][]float64
	ensure := func() {
		if gradW != nil {
			return
		}
		gradW = make([][]float64, len(projs)+1)
		var sum []float64
		for k := range projs {
			gx, gw := bitLinearBackwardBound(b.expected(input).Data, b.param(params[k]), b.expected(upstream[k]).Data, d.N, out[k], in)
			gradW[k+1] = gw
			if sum == nil {
				sum = gx
				continue
			}
			for j := range sum {
				sum[j] += gx[j]
			}
		}
		gradW[0] = sum
	}
	b.op(StageBackward, layer, strings.Join(projs, ",")+" backward (BitLinear, straight-through)", input+","+strings.Join(upstream, ","), gradInput,
		func() []float64 { ensure(); return gradW[0] })
	for k, p := range params {
		b.op(StageBackward, layer, projs[k]+" backward (BitLinear, straight-through)", input+","+upstream[k], "grad."+p,
			func() []float64 { ensure(); return gradW[k+1] })
	}
}

// normGrads registers an RMSNorm's backward checks: its input gradient
// (plus a residual gradient when the input also feeds a residual) and its
// weight gradient.
func (b *checkList) normGrads(layer int, op, input, weight, upstream, residual, gradInput string, C int) {
	d := b.d
	var gx, gw []float64
	ensure := func() {
		if gx != nil {
			return
		}
		gx, gw = rmsNormBackwardBound(b.expected(input).Data, b.param(weight), b.expected(upstream).Data, d.N, C, d.eps)
		if residual != "" {
			gres, total := b.expected(residual).Data, b.expected(gradInput).Data
			for j := range gx {
				gx[j] += 2 * gamma(1) * (2*abs32(gres[j]) + abs32(total[j]))
			}
		}
	}
	inputs := input + "," + upstream
	if residual != "" {
		inputs += "," + residual
	}
	b.op(StageBackward, layer, op+" backward", inputs, gradInput, func() []float64 { ensure(); return gx })
	b.op(StageBackward, layer, op+" weight gradient", input+","+upstream, "grad."+weight, func() []float64 { ensure(); return gw })
}

func abs32(v float32) float64 {
	if v < 0 {
		return -float64(v)
	}
	return float64(v)
}

func (b *checkList) backwardOps() {
	d, c := b.d, b.c
	N, H, V := d.N, d.H, d.V
	L := int(c.Config.NumHiddenLayers)
	b.op(StageBackward, -1, "cross-entropy backward", "logits", "grad.logits", func() []float64 {
		return lossGradBound(c.Logits.Data, c.Batch.IDs, d.B, d.T, V)
	})
	b.op(StageBackward, -1, "lm_head backward", "grad.logits", "grad.final_norm", func() []float64 {
		return scaled(absMatMul("NN", b.grad("logits").Data, b.param(b.headName()), N, H, V), 2*gamma(V+1))
	})
	if !c.Config.TieWordEmbeddings {
		b.op(StageBackward, -1, "lm_head weight gradient", "grad.logits,final_norm", "grad.lm_head.weight", func() []float64 {
			return scaled(absMatMul("TN", b.grad("logits").Data, b.node("final_norm").Data, V, H, N), 2*gamma(N+1))
		})
	}
	last := golden.HiddenName(L)
	b.normGrads(-1, "final norm (model.norm, RMSNorm)", last, "model.norm.weight", "grad.final_norm", "", "grad."+last, H)
	for i := L - 1; i >= 0; i-- {
		t := func(p string) string { return golden.TraceName(i, p) }
		g := func(p string) string { return "grad." + golden.TraceName(i, p) }
		x, next := golden.HiddenName(i), golden.HiddenName(i+1)
		b.bitLinearGrads(i, t("ffn_sub_norm"), g("ffn_sub_norm"), []string{"down_proj"},
			[]string{layerParam(i, "mlp.down_proj.weight")}, []string{"grad." + next}, []int{H}, d.I)
		b.normGrads(i, "ffn_sub_norm (RMSNorm)", t("act"), layerParam(i, "mlp.ffn_sub_norm.weight"), g("ffn_sub_norm"), "", g("act"), d.I)
		var gateB, upB []float64
		relu := func() {
			if gateB == nil {
				gateB, upB = reluSqBackwardBound(b.node(t("gate")).Data, b.node(t("up")).Data, b.expected(g("act")).Data)
			}
		}
		b.op(StageBackward, i, "relu²(gate)·up backward", "gate,up,"+g("act"), g("gate"), func() []float64 { relu(); return gateB })
		b.op(StageBackward, i, "relu²(gate)·up backward", "gate,up,"+g("act"), g("up"), func() []float64 { relu(); return upB })
		b.bitLinearGrads(i, t("ffn_norm"), g("ffn_norm"), []string{"gate_proj", "up_proj"},
			[]string{layerParam(i, "mlp.gate_proj.weight"), layerParam(i, "mlp.up_proj.weight")}, []string{g("gate"), g("up")}, []int{d.I, d.I}, H)
		b.normGrads(i, "post_attention_layernorm (RMSNorm) + MLP residual", t("h"), layerParam(i, "post_attention_layernorm.weight"),
			g("ffn_norm"), "grad."+next, g("h"), H)
		b.bitLinearGrads(i, t("attn_sub_norm"), g("attn_sub_norm"), []string{"o_proj"},
			[]string{layerParam(i, "self_attn.o_proj.weight")}, []string{g("h")}, []int{H}, d.Q)
		b.normGrads(i, "attn_sub_norm (RMSNorm)", t("attn"), layerParam(i, "self_attn.attn_sub_norm.weight"), g("attn_sub_norm"), "", g("attn"), d.Q)
		var gq, gk, gv []float64
		attn := func() {
			if gq == nil {
				gq, gk, gv = attentionBackwardBound(b.node(t("q")).Data, b.node(t("k")).Data, b.node(t("v")).Data, b.expected(g("attn")).Data, d.attn, d.theta)
			}
		}
		inputs := "q,k,v," + g("attn")
		b.op(StageBackward, i, "attention backward (RoPE, causal softmax)", inputs, g("q"), func() []float64 { attn(); return gq })
		b.op(StageBackward, i, "attention backward (RoPE, causal softmax)", inputs, g("k"), func() []float64 { attn(); return gk })
		b.op(StageBackward, i, "attention backward (RoPE, causal softmax)", inputs, g("v"), func() []float64 { attn(); return gv })
		b.bitLinearGrads(i, t("attn_norm"), g("attn_norm"), []string{"q_proj", "k_proj", "v_proj"},
			[]string{layerParam(i, "self_attn.q_proj.weight"), layerParam(i, "self_attn.k_proj.weight"), layerParam(i, "self_attn.v_proj.weight")},
			[]string{g("q"), g("k"), g("v")}, []int{d.Q, d.KV, d.KV}, H)
		b.normGrads(i, "input_layernorm (RMSNorm) + attention residual", x, layerParam(i, "input_layernorm.weight"),
			g("attn_norm"), g("h"), "grad."+x, H)
	}
	embed := "model.embed_tokens.weight"
	inputs := "input_ids,grad.hidden.0"
	if c.Config.TieWordEmbeddings {
		inputs += ",grad.logits,final_norm"
	}
	b.op(StageBackward, -1, "embedding gradient (lookup"+map[bool]string{true: " + tied lm_head", false: ""}[c.Config.TieWordEmbeddings]+")",
		inputs, "grad."+embed, func() []float64 {
			mag := scatterMagnitude(b.grad("hidden.0").Data, c.Batch.IDs, V, H)
			terms := N + 1
			if c.Config.TieWordEmbeddings {
				head := absMatMul("TN", b.grad("logits").Data, b.node("final_norm").Data, V, H, N)
				for j := range mag {
					mag[j] += head[j]
				}
				terms = 2*N + 2
			}
			return scaled(mag, 2*gamma(terms))
		})
}

// endToEnd adds the whole-model checks: every golden forward tensor from
// the token ids, the loss, every parameter gradient from the loss, and the
// integer-kernel path against the float path.
func (b *checkList) endToEnd() {
	c := b.c
	add := func(name, tensor string, value func(r *caseRun) (*model.Tensor, error), expected *model.Tensor, spreadKey string) {
		b.checks = append(b.checks, Check{
			Name: name, Layer: -1, Op: "end to end", Tensor: tensor, Stage: StageEndToEnd,
			run: func(r *caseRun) (Measurement, error) {
				actual, err := value(r)
				if err != nil {
					return Measurement{}, err
				}
				spread, err := r.spread(spreadKey)
				if err != nil {
					return Measurement{}, err
				}
				return compareEndToEnd(actual, expected, spread)
			},
		})
	}
	forwardValue := func(pick func(*model.Output) *model.Tensor) func(r *caseRun) (*model.Tensor, error) {
		return func(r *caseRun) (*model.Tensor, error) {
			out, err := r.endToEndForward()
			if err != nil {
				return nil, err
			}
			return pick(out), nil
		}
	}
	for i := 1; i < len(c.Hidden); i++ {
		add(fmt.Sprintf("%s end to end from input_ids", golden.HiddenName(i)), golden.HiddenName(i),
			forwardValue(func(o *model.Output) *model.Tensor { return o.Hidden[i] }), c.Hidden[i], golden.HiddenName(i))
	}
	add("final_norm end to end from input_ids", "final_norm", forwardValue(func(o *model.Output) *model.Tensor { return o.FinalNorm }), c.FinalNorm, "final_norm")
	add("logits end to end from input_ids", "logits", forwardValue(func(o *model.Output) *model.Tensor { return o.Logits }), c.Logits, "logits")
	add("loss end to end from input_ids", "loss", func(r *caseRun) (*model.Tensor, error) {
		out, err := r.endToEndForward()
		if err != nil {
			return nil, err
		}
		return lossOf(out, c.Batch)
	}, scalar(c.Loss), "loss")
	b.checks = append(b.checks, Check{
		Name: "integer-kernel logits against float-path logits", Layer: -1, Op: "end to end", Tensor: "logits", Stage: StageEndToEnd,
		run: func(r *caseRun) (Measurement, error) {
			ints, floats, err := r.bothPathLogits()
			if err != nil {
				return Measurement{}, err
			}
			spread, err := r.spread("logits")
			if err != nil {
				return Measurement{}, err
			}
			return compareEndToEnd(ints, floats, spread)
		},
	})
	for _, spec := range c.Config.Inventory() {
		expected, ok := c.Grads[spec.Name]
		if !ok {
			continue
		}
		add("grad."+spec.Name+" end to end from the loss", "grad."+spec.Name, func(r *caseRun) (*model.Tensor, error) {
			g, err := r.endToEndGradients()
			if err != nil {
				return nil, err
			}
			return g.Grads[spec.Name], nil
		}, expected, "grad."+spec.Name)
	}
}
