package ops

import "math"

// ----------------------------------------------------------------------------
// causal grouped-query attention

// AttnShape describes one attention call: batch B, sequence T, NH query
// heads and NKV KV heads of HD elements each.
type AttnShape struct {
	B, T, NH, NKV, HD int
}

// KVHead is the KV head that query head h reads: h div (nh/nkv).
func (s AttnShape) KVHead(h int) int { return h / (s.NH / s.NKV) }

// Scale is the score scale hd^-½.
func (s AttnShape) Scale() float64 { return 1 / math.Sqrt(float64(s.HD)) }

// HeadRows copies head h's rows out of x[B,T,heads,hd] for batch row b:
// dst[T,hd].
func HeadRows[F Float](dst, x []F, b, h, T, heads, hd int) {
	for t := 0; t < T; t++ {
		copy(dst[t*hd:(t+1)*hd], x[((b*T+t)*heads+h)*hd:][:hd])
	}
}

// AddHeadRows adds src[T,hd] into head h's rows of x[B,T,heads,hd].
func AddHeadRows[F Float](x, src []F, b, h, T, heads, hd int) {
	for t := 0; t < T; t++ {
		dst := x[((b*T+t)*heads+h)*hd:][:hd]
		for j, v := range src[t*hd : (t+1)*hd] {
			dst[j] += v
		}
	}
}

// Attention: for each batch row b and query head h,
//
//	att[b,h,t,u] = softmax_u≤t(q[b,t,h]·k[b,u,kvHead(h)] · hd^-½)
//	out[b,t,h]   = Σ_u att[b,h,t,u] · v[b,u,kvHead(h)]
//
// q, out: [B,T,nh,hd]; k, v: [B,T,nkv,hd]; att: [B,nh,T,T] saved for backward
// (entries above the diagonal are zero). The two products run as matrix
// products per (b, h); the softmax subtracts the row's maximum before exp.
func Attention[F Float](out, att, q, k, v []F, s AttnShape) {
	B, T, nh, nkv, hd := s.B, s.T, s.NH, s.NKV, s.HD
	scale := F(s.Scale())
	ParallelFor(B*nh, T*T*hd, func(lo, hi int) {
		qh, kh, vh, oh := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
		for bh := lo; bh < hi; bh++ {
			b, h := bh/nh, bh%nh
			kvh := s.KVHead(h)
			HeadRows(qh, q, b, h, T, nh, hd)
			HeadRows(kh, k, b, kvh, T, nkv, hd)
			HeadRows(vh, v, b, kvh, T, nkv, hd)
			scores := att[bh*T*T : (bh+1)*T*T]
			MatmulNT(scores, qh, kh, T, T, hd, false)
			for t := 0; t < T; t++ {
				row := scores[t*T : (t+1)*T]
				for u := range row[:t+1] {
					row[u] *= scale
				}
				Softmax(row[:t+1])
				clear(row[t+1:])
			}
			MatmulNN(oh, scores, vh, T, hd, T, false)
			for t := 0; t < T; t++ {
				copy(out[((b*T+t)*nh+h)*hd:][:hd], oh[t*hd:(t+1)*hd])
			}
		}
	})
}

// Softmax replaces row by exp(row − max row) / Σ exp(row − max row), the
// exponentials and their sum in float64.
func Softmax[F Float](row []F) {
	maxScore := F(math.Inf(-1))
	for _, v := range row {
		maxScore = max(maxScore, v)
	}
	var sum float64
	for u, v := range row {
		e := math.Exp(float64(v - maxScore))
		row[u] = F(e)
		sum += e
	}
	inv := F(1 / sum)
	for u := range row {
		row[u] *= inv
	}
}

// AttentionBackward accumulates gradQ, gradK, gradV from gradOut. With
// dp = gradOut·vᵀ and ds = att ⊙ (dp − Σ_u att·dp) · scale, per (b, h):
//
//	gradQ += ds · k
//	gradK += dsᵀ · q     (summed over the query heads of a group)
//	gradV += attᵀ · gradOut
//
// Work is split over (b, KV head) so that each gradK/gradV row has a single
// writer and a fixed summation order.
func AttentionBackward[F Float](gradQ, gradK, gradV, gradOut, att, q, k, v []F, s AttnShape) {
	B, T, nh, nkv, hd := s.B, s.T, s.NH, s.NKV, s.HD
	scale := F(s.Scale())
	ParallelFor(B*nkv, T*T*hd*(nh/nkv)*5, func(lo, hi int) {
		kh, vh, qh, gh := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
		gk, gv, gq := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
		dp := make([]F, T*T)
		for bk := lo; bk < hi; bk++ {
			b, kvh := bk/nkv, bk%nkv
			HeadRows(kh, k, b, kvh, T, nkv, hd)
			HeadRows(vh, v, b, kvh, T, nkv, hd)
			clear(gk)
			clear(gv)
			for h := 0; h < nh; h++ {
				if s.KVHead(h) != kvh {
					continue
				}
				bh := b*nh + h
				p := att[bh*T*T : (bh+1)*T*T]
				HeadRows(qh, q, b, h, T, nh, hd)
				HeadRows(gh, gradOut, b, h, T, nh, hd)
				MatmulNT(dp, gh, vh, T, T, hd, false)
				for t := 0; t < T; t++ {
					pr, dr := p[t*T:(t+1)*T], dp[t*T:(t+1)*T]
					var sum F
					for u := range pr {
						sum += pr[u] * dr[u]
					}
					for u := range pr {
						dr[u] = pr[u] * (dr[u] - sum) * scale
					}
				}
				MatmulNN(gq, dp, kh, T, hd, T, false)
				AddHeadRows(gradQ, gq, b, h, T, nh, hd)
				MatmulTN(gk, dp, qh, T, hd, T, true)
				MatmulTN(gv, p, gh, T, hd, T, true)
			}
			AddHeadRows(gradK, gk, b, kvh, T, nkv, hd)
			AddHeadRows(gradV, gv, b, kvh, T, nkv, hd)
		}
	})
}
