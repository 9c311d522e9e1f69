package mutants

import (
	"math"

	"github.com/tritter-ai/conformance/internal/ops"
)

// ----------------------------------------------------------------------------
// attention

// attention is ops.Attention with the softmax's extent and formula as
// parameters: row t of the scores covers u < last(t), normalised by
// softmax.
func attention[F ops.Float](out, att, q, k, v []F, s ops.AttnShape, last func(t int) int, softmax func(row []F)) {
	T, hd := s.T, s.HD
	scale := F(s.Scale())
	qh, kh, vh, oh := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
	for bh := 0; bh < s.B*s.NH; bh++ {
		b, h := bh/s.NH, bh%s.NH
		ops.HeadRows(qh, q, b, h, T, s.NH, hd)
		ops.HeadRows(kh, k, b, s.KVHead(h), T, s.NKV, hd)
		ops.HeadRows(vh, v, b, s.KVHead(h), T, s.NKV, hd)
		scores := att[bh*T*T : (bh+1)*T*T]
		ops.MatmulNT(scores, qh, kh, T, T, hd, false)
		for t := 0; t < T; t++ {
			row := scores[t*T : (t+1)*T]
			for u := range row[:last(t)] {
				row[u] *= scale
			}
			softmax(row[:last(t)])
			clear(row[last(t):])
		}
		ops.MatmulNN(oh, scores, vh, T, hd, T, false)
		for t := 0; t < T; t++ {
			copy(out[((b*T+t)*s.NH+h)*hd:][:hd], oh[t*hd:(t+1)*hd])
		}
	}
}

// noCausalMask: every position attends to every position.
func noCausalMask[F ops.Float](t *ops.Table[F]) {
	t.Attention.Forward = func(out, att, q, k, v []F, s ops.AttnShape) {
		attention(out, att, q, k, v, s, func(int) int { return s.T }, ops.Softmax[F])
	}
}

// softmaxNoMaxShift: exp(s) / Σ exp(s), without subtracting the row's
// maximum first. In real arithmetic this is the same softmax; in float64
// exponentials of float32 scores it is within rounding of the reference
// while the scores are moderate, and overflows (Inf/Inf = NaN) once a
// score exceeds log(MaxFloat64) ≈ 709.
func softmaxNoMaxShift[F ops.Float](t *ops.Table[F]) {
	softmax := func(row []F) {
		var sum float64
		for u, v := range row {
			e := math.Exp(float64(v))
			row[u] = F(e)
			sum += e
		}
		inv := F(1 / sum)
		for u := range row {
			row[u] *= inv
		}
	}
	t.Attention.Forward = func(out, att, q, k, v []F, s ops.AttnShape) {
		attention(out, att, q, k, v, s, func(t int) int { return t + 1 }, softmax)
	}
}

// attnScaleOneOverHD: scores scaled by 1/hd instead of hd^-½, forward and
// backward. The reference op with q·hd^-½ in place of q computes exactly
// that.
func attnScaleOneOverHD[F ops.Float](t *ops.Table[F]) {
	forward, backward := t.Attention.Forward, t.Attention.Backward
	scaled := func(q []F, s ops.AttnShape) []F {
		out := make([]F, len(q))
		for i, v := range q {
			out[i] = v * F(s.Scale())
		}
		return out
	}
	t.Attention.Forward = func(out, att, q, k, v []F, s ops.AttnShape) {
		forward(out, att, scaled(q, s), k, v, s)
	}
	t.Attention.Backward = func(gradQ, gradK, gradV, gradOut, att, q, k, v []F, s ops.AttnShape) {
		gradScaled := make([]F, len(gradQ))
		backward(gradScaled, gradK, gradV, gradOut, att, scaled(q, s), k, v, s)
		for i, g := range gradScaled {
			gradQ[i] += g * F(s.Scale())
		}
	}
}

// gqaModMapping: query head h reads KV head h mod nkv instead of
// h div (nh/nkv), forward and backward. The reference op computes that
// when the query heads are reordered so that head h sits at position
// (h mod nkv)·(nh/nkv) + h div nkv.
func gqaModMapping[F ops.Float](t *ops.Table[F]) {
	forward, backward := t.Attention.Forward, t.Attention.Backward
	position := func(h int, s ops.AttnShape) int { return (h%s.NKV)*(s.NH/s.NKV) + h/s.NKV }
	// permute moves head h of x[B,T,nh,hd] to position(h), or back.
	permute := func(x []F, s ops.AttnShape, back bool) []F {
		out := make([]F, len(x))
		for bt := 0; bt < s.B*s.T; bt++ {
			for h := 0; h < s.NH; h++ {
				from, to := h, position(h, s)
				if back {
					from, to = to, from
				}
				copy(out[(bt*s.NH+to)*s.HD:][:s.HD], x[(bt*s.NH+from)*s.HD:][:s.HD])
			}
		}
		return out
	}
	t.Attention.Forward = func(out, att, q, k, v []F, s ops.AttnShape) {
		permuted := make([]F, len(out))
		forward(permuted, att, permute(q, s, false), k, v, s)
		copy(out, permute(permuted, s, true))
	}
	t.Attention.Backward = func(gradQ, gradK, gradV, gradOut, att, q, k, v []F, s ops.AttnShape) {
		gradPermuted := make([]F, len(gradQ))
		backward(gradPermuted, gradK, gradV, permute(gradOut, s, false), att, permute(q, s, false), k, v, s)
		for i, g := range permute(gradPermuted, s, true) {
			gradQ[i] += g
		}
	}
}

// attentionBackward is ops.AttentionBackward with two knobs: withSum
// false drops the −Σ att·dp term of the softmax gradient; allHeads false
// takes the K and V gradients from the first query head of each group
// only.
func attentionBackward[F ops.Float](gradQ, gradK, gradV, gradOut, att, q, k, v []F, s ops.AttnShape, withSum, allHeads bool) {
	T, hd := s.T, s.HD
	scale := F(s.Scale())
	kh, vh, qh, gh := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
	gk, gv, gq := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
	dp := make([]F, T*T)
	for bk := 0; bk < s.B*s.NKV; bk++ {
		b, kvh := bk/s.NKV, bk%s.NKV
		ops.HeadRows(kh, k, b, kvh, T, s.NKV, hd)
		ops.HeadRows(vh, v, b, kvh, T, s.NKV, hd)
		clear(gk)
		clear(gv)
		for h := 0; h < s.NH; h++ {
			if s.KVHead(h) != kvh {
				continue
			}
			bh := b*s.NH + h
			p := att[bh*T*T : (bh+1)*T*T]
			ops.HeadRows(qh, q, b, h, T, s.NH, hd)
			ops.HeadRows(gh, gradOut, b, h, T, s.NH, hd)
			ops.MatmulNT(dp, gh, vh, T, T, hd, false)
			for t := 0; t < T; t++ {
				pr, dr := p[t*T:(t+1)*T], dp[t*T:(t+1)*T]
				var sum F
				if withSum {
					for u := range pr {
						sum += pr[u] * dr[u]
					}
				}
				for u := range pr {
					dr[u] = pr[u] * (dr[u] - sum) * scale
				}
			}
			ops.MatmulNN(gq, dp, kh, T, hd, T, false)
			ops.AddHeadRows(gradQ, gq, b, h, T, s.NH, hd)
			if firstOfGroup := h == 0 || s.KVHead(h-1) != kvh; !allHeads && !firstOfGroup {
				continue
			}
			ops.MatmulTN(gk, dp, qh, T, hd, T, true)
			ops.MatmulTN(gv, p, gh, T, hd, T, true)
		}
		ops.AddHeadRows(gradK, gk, b, kvh, T, s.NKV, hd)
		ops.AddHeadRows(gradV, gv, b, kvh, T, s.NKV, hd)
	}
}

// softmaxGradNoSum: the attention backward without the −Σ p·dp term.
func softmaxGradNoSum[F ops.Float](t *ops.Table[F]) {
	t.Attention.Backward = func(gradQ, gradK, gradV, gradOut, att, q, k, v []F, s ops.AttnShape) {
		attentionBackward(gradQ, gradK, gradV, gradOut, att, q, k, v, s, false, true)
	}
}

// gqaGradFirstHead: the K/V gradients from the first query head of each
// group only.
func gqaGradFirstHead[F ops.Float](t *ops.Table[F]) {
	t.Attention.Backward = func(gradQ, gradK, gradV, gradOut, att, q, k, v []F, s ops.AttnShape) {
		attentionBackward(gradQ, gradK, gradV, gradOut, att, q, k, v, s, true, false)
	}
}
