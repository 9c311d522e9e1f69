package mutants

import (
	"math"

	"github.com/tritter-ai/conformance/internal/ops"
)

// ----------------------------------------------------------------------------
// embedding and loss

// embeddingScaled: the embedding output multiplied by sqrt(H).
func embeddingScaled[F ops.Float](t *ops.Table[F]) {
	forward := t.Embedding.Forward
	t.Embedding.Forward = func(out []F, table ops.Matrix[F], ids []int32, H int) {
		forward(out, table, ids, H)
		scale := F(math.Sqrt(float64(H)))
		for i := range out[:len(ids)*H] {
			out[i] *= scale
		}
	}
}

// embeddingGradAssign: the embedding backward assigns each token's
// gradient to its row instead of accumulating repeated tokens.
func embeddingGradAssign[F ops.Float](t *ops.Table[F]) {
	t.Embedding.Backward = func(gradTable, gradOut []F, ids []int32, H int) {
		for n, id := range ids {
			copy(gradTable[int(id)*H:int(id)*H+H], gradOut[n*H:n*H+H])
		}
	}
}

// tiedGradOnePath: the tied embedding's gradient from the lookup only,
// dropping the lm_head path already accumulated in gradTable.
func tiedGradOnePath[F ops.Float](t *ops.Table[F]) {
	backward := t.Embedding.Backward
	t.Embedding.Backward = func(gradTable, gradOut []F, ids []int32, H int) {
		clear(gradTable)
		backward(gradTable, gradOut, ids, H)
	}
}

// lossNoShift: the cross-entropy of logits[t] against ids[t] instead of
// ids[t+1], over all B·T positions.
func lossNoShift[F ops.Float](t *ops.Table[F]) {
	t.CrossEntropy = func(gradLogits, logits []F, ids []int32, B, T, V int) float64 {
		count := B * T
		var total float64
		for bt := 0; bt < count; bt++ {
			row, target := logits[bt*V:bt*V+V], int(ids[bt])
			logSum := ops.LogSumExp(row)
			total += logSum - float64(row[target])
			if gradLogits != nil {
				g := gradLogits[bt*V : bt*V+V]
				for i, z := range row {
					g[i] = F(math.Exp(float64(z)-logSum) / float64(count))
				}
				g[target] -= F(1 / float64(count))
			}
		}
		return total / float64(count)
	}
}

// lossGradSum: d loss/d logits not divided by the token count.
func lossGradSum[F ops.Float](t *ops.Table[F]) {
	crossEntropy := t.CrossEntropy
	t.CrossEntropy = func(gradLogits, logits []F, ids []int32, B, T, V int) float64 {
		loss := crossEntropy(gradLogits, logits, ids, B, T, V)
		for i := range gradLogits {
			gradLogits[i] *= F(B * (T - 1))
		}
		return loss
	}
}

// ----------------------------------------------------------------------------
// RMSNorm

// norms are the five RMSNorm entries of a table.
func norms[F ops.Float](t *ops.Table[F]) []*ops.NormOp[F] {
	return []*ops.NormOp[F]{&t.InputNorm, &t.AttnSubNorm, &t.PostNorm, &t.FFNSubNorm, &t.FinalNorm}
}

// epsOutsideSqrt: x / (sqrt(mean x²) + eps) in every RMSNorm.
func epsOutsideSqrt[F ops.Float](t *ops.Table[F]) {
	forward := func(out, rstd, x, w []F, N, C int, eps float64) {
		for n := 0; n < N; n++ {
			xn := x[n*C : n*C+C]
			var sum float64
			for _, v := range xn {
				sum += float64(v) * float64(v)
			}
			r := 1 / (F(math.Sqrt(float64(F(sum/float64(C))))) + F(eps))
			rstd[n] = r
			for j, v := range xn {
				out[n*C+j] = w[j] * F(v*r)
			}
		}
	}
	for _, norm := range norms(t) {
		norm.Forward = forward
	}
}

// identityNorm is a sub-norm left out: out = x, gradX += gradOut.
func identityNorm[F ops.Float]() ops.NormOp[F] {
	return ops.NormOp[F]{
		Forward: func(out, _, x, _ []F, N, C int, _ float64) { copy(out[:N*C], x) },
		Backward: func(gradX, _, gradOut, _, _, _ []F, N, C int) {
			for i, g := range gradOut[:N*C] {
				gradX[i] += g
			}
		},
	}
}

func noAttnSubNorm[F ops.Float](t *ops.Table[F]) { t.AttnSubNorm = identityNorm[F]() }
func noFFNSubNorm[F ops.Float](t *ops.Table[F])  { t.FFNSubNorm = identityNorm[F]() }

// normGradNoMeanTerm: the RMSNorm input gradient without its
// −r³/C·x·Σ g·w·x term, in every RMSNorm.
func normGradNoMeanTerm[F ops.Float](t *ops.Table[F]) {
	backward := func(gradX, gradW, gradOut, x, w, rstd []F, N, C int) {
		ops.RMSNormBackward(make([]F, N*C), gradW, gradOut, x, w, rstd, N, C)
		for n := 0; n < N; n++ {
			for j := 0; j < C; j++ {
				gradX[n*C+j] += rstd[n] * w[j] * gradOut[n*C+j]
			}
		}
	}
	for _, norm := range norms(t) {
		norm.Backward = backward
	}
}

// normWeightGradNoRstd: the RMSNorm weight gradient Σ g·x, missing the
// 1/rms factor, in every RMSNorm.
func normWeightGradNoRstd[F ops.Float](t *ops.Table[F]) {
	backward := func(gradX, gradW, gradOut, x, w, rstd []F, N, C int) {
		ops.RMSNormBackward(gradX, make([]F, C), gradOut, x, w, rstd, N, C)
		for n := 0; n < N; n++ {
			for j := 0; j < C; j++ {
				gradW[j] += gradOut[n*C+j] * x[n*C+j]
			}
		}
	}
	for _, norm := range norms(t) {
		norm.Backward = backward
	}
}

// ----------------------------------------------------------------------------
// RoPE

// interleavedRope: RoPE on the pairs (2j, 2j+1) instead of (j, j+hd/2),
// forward and backward.
func interleavedRope[F ops.Float](t *ops.Table[F]) {
	rotate := func(x []F, rt ops.RopeTable[F], B, T, heads int, sign F) {
		half := rt.Half
		hd := 2 * half
		for bt := 0; bt < B*T; bt++ {
			tt := bt % T
			for h := 0; h < heads; h++ {
				v := x[(bt*heads+h)*hd : (bt*heads+h+1)*hd]
				for j := 0; j < half; j++ {
					c, s := rt.Cos[tt*half+j], sign*rt.Sin[tt*half+j]
					a, b := v[2*j], v[2*j+1]
					v[2*j] = F(a*c) - F(b*s)
					v[2*j+1] = F(b*c) + F(a*s)
				}
			}
		}
	}
	t.Rope.Forward = func(x []F, rt ops.RopeTable[F], B, T, heads int) { rotate(x, rt, B, T, heads, 1) }
	t.Rope.Backward = func(g []F, rt ops.RopeTable[F], B, T, heads int) { rotate(g, rt, B, T, heads, -1) }
}

// ropeGradSameAngle: the RoPE backward rotates by +angle instead of −angle.
func ropeGradSameAngle[F ops.Float](t *ops.Table[F]) { t.Rope.Backward = t.Rope.Forward }

// ----------------------------------------------------------------------------
// MLP and residuals

// silu: silu(gate)·up instead of relu(gate)²·up, forward and backward.
func silu[F ops.Float](t *ops.Table[F]) {
	t.GLU.Forward = func(out, gate, up []F) {
		for i, g := range gate[:len(out)] {
			out[i] = F(float64(g)/(1+math.Exp(-float64(g)))) * up[i]
		}
	}
	t.GLU.Backward = func(gradGate, gradUp, gradOut, gate, up []F) {
		for i, d := range gradOut {
			g := gate[i]
			sig := F(1 / (1 + math.Exp(-float64(g))))
			gradGate[i] += d * up[i] * sig * (1 + g*(1-sig))
			gradUp[i] += d * g * sig
		}
	}
}

// reluSqGradNoFactor2: d relu(g)²/dg = relu(g) instead of 2·relu(g).
func reluSqGradNoFactor2[F ops.Float](t *ops.Table[F]) {
	t.GLU.Backward = func(gradGate, gradUp, gradOut, gate, up []F) {
		for i, d := range gradOut {
			if g := gate[i]; g > 0 {
				gradGate[i] += g * up[i] * d
				gradUp[i] += g * g * d
			}
		}
	}
}

// noAttnResidual: h = o instead of x + o.
func noAttnResidual[F ops.Float](t *ops.Table[F]) {
	t.AttnResidual.Forward = func(out, _, branch []F) { copy(out, branch) }
}

// noResidualGrad: the attention residual passes no gradient to x.
func noResidualGrad[F ops.Float](t *ops.Table[F]) {
	t.AttnResidual.Backward = func(gradStream, _ []F) { clear(gradStream) }
}

// mlpResidualFromInput: out = x + down instead of h + down. The MLP
// residual does not see the layer input x, so the variant remembers it
// from the attention residual of the same layer, which runs just before
// (a table serves one network pass, layer after layer).
func mlpResidualFromInput[F ops.Float](t *ops.Table[F]) {
	var layerInput []F
	attnResidual, mlpResidual := t.AttnResidual.Forward, t.MLPResidual.Forward
	t.AttnResidual.Forward = func(out, stream, branch []F) {
		layerInput = stream
		attnResidual(out, stream, branch)
	}
	t.MLPResidual.Forward = func(out, _, branch []F) { mlpResidual(out, layerInput, branch) }
}
