package numerics

import "math"

// Bounds for RoPE + causal GQA softmax attention, the lm_head and the loss
// (see bounds.go for the notation).

// attnDims are the sizes of one attention op: q [B,T,nh,hd], k and v
// [B,T,nkv,hd].
type attnDims struct{ B, T, nh, nkv, hd int }

// ropeAngleErr is the absolute error bound of a float32 RoPE angle
// t·theta^(-2j/hd): the power, the reciprocal and the product each round
// (torch computes inv_freq and the angles in float32), so the angle, which
// grows with the position, is off by up to 6u of itself; cos and sin add a
// rounding of their own.
func ropeAngleErr(angle float64) float64 { return 6*unitRoundoff*math.Abs(angle) + unitRoundoff }

// ropeTables returns cos, sin and their error bounds [T, hd/2] in float64.
func ropeTables(T, hd int, theta float64) (cos, sin, errs []float64) {
	half := hd / 2
	cos, sin, errs = make([]float64, T*half), make([]float64, T*half), make([]float64, T*half)
	for t := 0; t < T; t++ {
		for j := 0; j < half; j++ {
			angle := float64(t) * math.Pow(theta, -float64(2*j)/float64(hd))
			cos[t*half+j], sin[t*half+j] = math.Cos(angle), math.Sin(angle)
			errs[t*half+j] = ropeAngleErr(angle)
		}
	}
	return cos, sin, errs
}

// rotated holds one head's RoPE'd rows [T,hd] with their error bounds.
type rotated struct{ val, err []float64 }

// rope rotates head h of x[B,T,heads,hd] for batch row b (HF's
// non-interleaved rotate_half): x'_j = x_j·c − x_{j+hd/2}·s, and bounds
// each result by (|x_j| + |x_{j+hd/2}|)·(angle error + 3u).
func rope(x []float32, b, h, heads int, d attnDims, cos, sin, errs []float64) rotated {
	T, hd, half := d.T, d.hd, d.hd/2
	r := rotated{val: make([]float64, T*hd), err: make([]float64, T*hd)}
	for t := 0; t < T; t++ {
		row := x[((b*T+t)*heads+h)*hd:][:hd]
		for j := 0; j < half; j++ {
			c, s, e := cos[t*half+j], sin[t*half+j], errs[t*half+j]
			a, z := float64(row[j]), float64(row[j+half])
			r.val[t*hd+j] = a*c - z*s
			r.val[t*hd+j+half] = z*c + a*s
			bound := (math.Abs(a) + math.Abs(z)) * (e + 3*unitRoundoff)
			r.err[t*hd+j], r.err[t*hd+j+half] = bound, bound
		}
	}
	return r
}

// softmaxRow holds the causal softmax of one query row with the relative
// error bound of each probability.
type softmaxRow struct{ p, relErr []float64 }

// attentionProbs computes p[t][u] (u ≤ t) for query head h of batch row b.
// A score's error is the rounding of its hd-term dot product of rotated
// rows plus what their own errors contribute; the probability's relative
// error is that score error plus the row's largest one (the normaliser),
// the subtraction of the max and the T-term sum.
func attentionProbs(q, k rotated, d attnDims) []softmaxRow {
	T, hd := d.T, d.hd
	scale := 1 / math.Sqrt(float64(hd))
	rows := make([]softmaxRow, T)
	for t := 0; t < T; t++ {
		scores, serr := make([]float64, t+1), make([]float64, t+1)
		maxScore, maxErr := math.Inf(-1), 0.0
		for u := 0; u <= t; u++ {
			var s, mag, e float64
			for j := 0; j < hd; j++ {
				qv, kv := q.val[t*hd+j], k.val[u*hd+j]
				s += qv * kv
				mag += math.Abs(qv * kv)
				e += q.err[t*hd+j]*math.Abs(kv) + math.Abs(qv)*k.err[u*hd+j]
			}
			scores[u] = s * scale
			serr[u] = (gamma(hd+3)*mag + e) * scale
			maxScore, maxErr = math.Max(maxScore, scores[u]), math.Max(maxErr, serr[u])
		}
		var sum float64
		rel := make([]float64, t+1)
		for u := range scores {
			shift := maxScore - scores[u]
			rel[u] = math.Expm1(serr[u]+maxErr+unitRoundoff*shift+gamma(T+4)) + unitRoundoff
			scores[u] = math.Exp(-shift)
			sum += scores[u]
		}
		for u := range scores {
			scores[u] /= sum
		}
		rows[t] = softmaxRow{p: scores, relErr: rel}
	}
	return rows
}

// headValues returns head h of x[B,T,heads,hd] for batch row b as float64 [T,hd].
func headValues(x []float32, b, h, heads int, d attnDims) []float64 {
	out := make([]float64, d.T*d.hd)
	for t := 0; t < d.T; t++ {
		for j, v := range x[((b*d.T+t)*heads+h)*d.hd:][:d.hd] {
			out[t*d.hd+j] = float64(v)
		}
	}
	return out
}

// attentionBound bounds attn[B,T,nh·hd] = softmax(RoPE(q)·RoPE(k)ᵀ·hd^-½, causal)·v:
// o_td = Σ_u p_tu·v_ud carries its T-term rounding and each probability's
// relative error, weighted by p_tu·|v_ud|.
func attentionBound(q, k, v []float32, d attnDims, theta float64) []float64 {
	cos, sin, errs := ropeTables(d.T, d.hd, theta)
	group := d.nh / d.nkv
	T, hd := d.T, d.hd
	b := make([]float64, len(q))
	for bi := 0; bi < d.B; bi++ {
		for kh := 0; kh < d.nkv; kh++ {
			kr := rope(k, bi, kh, d.nkv, d, cos, sin, errs)
			vh := headValues(v, bi, kh, d.nkv, d)
			for h := kh * group; h < (kh+1)*group; h++ {
				probs := attentionProbs(rope(q, bi, h, d.nh, d, cos, sin, errs), kr, d)
				for t := 0; t < T; t++ {
					row := probs[t]
					out := b[((bi*T+t)*d.nh+h)*hd:][:hd]
					for j := 0; j < hd; j++ {
						var mag, e float64
						for u, p := range row.p {
							av := math.Abs(vh[u*hd+j])
							mag += p * av
							e += row.relErr[u] * p * av
						}
						out[j] = 2*(gamma(T+2)*mag+e) + tinyBound
					}
				}
			}
		}
	}
	return b
}

// attentionBackwardBound bounds the gradients of q, k and v (before RoPE)
// from the upstream gradient dO[B,T,nh·hd]. With dP = dO·vᵀ,
// D_t = Σ_u p·dP and dS = p⊙(dP − D)·hd^-½:
//
//	dq' = dS·k'   dk' = Σ_group dSᵀ·q'   dv = Σ_group pᵀ·dO
//
// and the inverse rotation for q and k. Each product's bound is its
// rounding on Σ|terms| plus the propagated errors of its factors, first
// order, as in attentionBound.
func attentionBackwardBound(q, k, v, dO []float32, d attnDims, theta float64) (gq, gk, gv []float64) {
	cos, sin, errs := ropeTables(d.T, d.hd, theta)
	group := d.nh / d.nkv
	T, hd := d.T, d.hd
	scale := 1 / math.Sqrt(float64(hd))
	gq, gk, gv = make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
	for bi := 0; bi < d.B; bi++ {
		for kh := 0; kh < d.nkv; kh++ {
			kr := rope(k, bi, kh, d.nkv, d, cos, sin, errs)
			vh := headValues(v, bi, kh, d.nkv, d)
			dkMag, dkErr := make([]float64, T*hd), make([]float64, T*hd) // rotated frame
			dvMag, dvErr := make([]float64, T*hd), make([]float64, T*hd)
			for h := kh * group; h < (kh+1)*group; h++ {
				qr := rope(q, bi, h, d.nh, d, cos, sin, errs)
				probs := attentionProbs(qr, kr, d)
				do := headValues(dO, bi, h, d.nh, d)
				dqMag, dqErr := make([]float64, T*hd), make([]float64, T*hd)
				for t := 0; t < T; t++ {
					row := probs[t]
					dP, dPMag := make([]float64, t+1), make([]float64, t+1)
					var D, DMag, DErr float64
					for u := range row.p {
						for j := 0; j < hd; j++ {
							dP[u] += do[t*hd+j] * vh[u*hd+j]
							dPMag[u] += math.Abs(do[t*hd+j] * vh[u*hd+j])
						}
						D += row.p[u] * dP[u]
						DMag += row.p[u] * math.Abs(dP[u])
						DErr += row.relErr[u]*row.p[u]*math.Abs(dP[u]) + row.p[u]*gamma(hd+1)*dPMag[u]
					}
					DErr += gamma(T+1) * DMag
					for u, p := range row.p {
						inner := math.Abs(dP[u]) + math.Abs(D)
						dsMag := scale * p * inner
						dsErr := scale * (p*(row.relErr[u]+gamma(3))*inner + p*(gamma(hd+1)*dPMag[u]+DErr))
						for j := 0; j < hd; j++ {
							ka, qa := math.Abs(kr.val[u*hd+j]), math.Abs(qr.val[t*hd+j])
							dqMag[t*hd+j] += dsMag * ka
							dqErr[t*hd+j] += dsErr*ka + dsMag*kr.err[u*hd+j]
							dkMag[u*hd+j] += dsMag * qa
							dkErr[u*hd+j] += dsErr*qa + dsMag*qr.err[t*hd+j]
							oa := math.Abs(do[t*hd+j])
							dvMag[u*hd+j] += p * oa
							dvErr[u*hd+j] += row.relErr[u] * p * oa
						}
					}
				}
				inverseRopeBound(gq, dqMag, dqErr, bi, h, d.nh, gamma(T+1), d, errs)
			}
			inverseRopeBound(gk, dkMag, dkErr, bi, kh, d.nkv, gamma(group*T+1), d, errs)
			for t := 0; t < T; t++ {
				out := gv[((bi*T+t)*d.nkv+kh)*hd:][:hd]
				for j := range out {
					out[j] = 2*(gamma(group*T+1)*dvMag[t*hd+j]+dvErr[t*hd+j]) + tinyBound
				}
			}
		}
	}
	return gq, gk, gv
}

// inverseRopeBound writes the bound of head h's gradient before RoPE into
// dst[B,T,heads,hd]: the rotated-frame bound (the product's rounding
// roundErr on its magnitude plus the propagated error) carried through the
// inverse rotation, plus the rotation's own error on the magnitude.
func inverseRopeBound(dst, mag, err []float64, b, h, heads int, roundErr float64, d attnDims, errs []float64) {
	T, hd, half := d.T, d.hd, d.hd/2
	for t := 0; t < T; t++ {
		out := dst[((b*T+t)*heads+h)*hd:][:hd]
		for j := 0; j < half; j++ {
			e1 := roundErr*mag[t*hd+j] + err[t*hd+j]
			e2 := roundErr*mag[t*hd+j+half] + err[t*hd+j+half]
			m := mag[t*hd+j] + mag[t*hd+j+half]
			bound := 2*(e1+e2+m*(errs[t*half+j]+3*unitRoundoff)) + tinyBound
			out[j], out[j+half] = bound, bound
		}
	}
}

// ----------------------------------------------------------------------------
// lm_head, loss, embedding

// lossBound bounds the mean next-token cross-entropy of logits[B,T,V] as a
// float32 implementation computes it: per row, log-sum-exp rounds the
// shift by the max, each exp, the V-term sum, the log and the final
// subtraction; the mean adds its own sum's rounding and the float32 store.
func lossBound(logits []float32, ids []int32, B, T, V int) (loss, bound float64) {
	count := B * (T - 1)
	var total, errTotal float64
	for bt := 0; bt < B*T; bt++ {
		if bt%T == T-1 {
			continue
		}
		row := logits[bt*V : bt*V+V]
		m := math.Inf(-1)
		for _, z := range row {
			m = math.Max(m, float64(z))
		}
		var sum, spreadMax float64
		for _, z := range row {
			sum += math.Exp(float64(z) - m)
			spreadMax = math.Max(spreadMax, m-float64(z))
		}
		lse := m + math.Log(sum)
		target := float64(row[ids[bt+1]])
		l := lse - target
		total += l
		errTotal += unitRoundoff*spreadMax + gamma(V+3) + 2*unitRoundoff*math.Abs(lse) + unitRoundoff*math.Abs(target) + unitRoundoff*math.Abs(l)
	}
	loss = total / float64(count)
	return loss, 2*(errTotal/float64(count)+gamma(count+2)*math.Abs(loss)) + tinyBound
}

// lossGradBound bounds d loss / d logits = (softmax(z) − onehot)/count per
// element: the probability's relative error (the shift, exp, sum and
// division) and the final rounding.
func lossGradBound(logits []float32, ids []int32, B, T, V int) []float64 {
	count := float64(B * (T - 1))
	b := make([]float64, len(logits))
	for bt := 0; bt < B*T; bt++ {
		out := b[bt*V : bt*V+V]
		if bt%T == T-1 {
			for i := range out {
				out[i] = tinyBound
			}
			continue
		}
		row := logits[bt*V : bt*V+V]
		m := math.Inf(-1)
		for _, z := range row {
			m = math.Max(m, float64(z))
		}
		var sum float64
		for _, z := range row {
			sum += math.Exp(float64(z) - m)
		}
		target := int(ids[bt+1])
		for i, z := range row {
			p := math.Exp(float64(z)-m) / sum
			g := p
			if i == target {
				g -= 1
			}
			rel := unitRoundoff*(m-float64(z)) + gamma(V+5)
			out[i] = 2*(p*rel/count+unitRoundoff*math.Abs(g)/count) + tinyBound
		}
	}
	return b
}

// scatterMagnitude returns Σ_{n: ids[n]=v} |g[n,:]| as [V,H]: the magnitude
// of the embedding lookup's gradient.
func scatterMagnitude(g []float32, ids []int32, V, H int) []float64 {
	out := make([]float64, V*H)
	for n, id := range ids {
		dst := out[int(id)*H : int(id)*H+H]
		for j, v := range g[n*H : n*H+H] {
			dst[j] += math.Abs(float64(v))
		}
	}
	return out
}
