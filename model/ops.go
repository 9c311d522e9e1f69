package model

import (
	"math"
	"runtime"
	"sync"
)

// This file holds the model's float ops, each forward next to its backward,
// in the style of llm.c. The ops are generic over float32 (the model) and
// float64 (the finite-difference check in the tests). Activations are
// row-major; N = B*T is the number of tokens. Forward functions write their
// output; backward functions accumulate (+=) into the input gradients unless
// their comment says otherwise, so that branches of the graph add up.

type float interface{ ~float32 | ~float64 }

// parallelFor splits [0, n) into contiguous blocks and runs fn on each block
// on its own goroutine. Callers only parallelise over independent outputs,
// so results never depend on the number of threads. work is a rough number
// of operations per index; tiny jobs run inline.
func parallelFor(n, work int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	if workers <= 1 || n*work < 1<<15 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// ----------------------------------------------------------------------------
// matrix products (the float32 instantiations go to the shared GEMM kernels)

// matmulNT: c[m,n] (+)= a[m,k] · b[n,k]ᵀ.
func matmulNT[F float](c, a, b []F, m, n, k int, accumulate bool) {
	if c32, ok := any(c).([]float32); ok {
		gemmNT(c32, any(a).([]float32), any(b).([]float32), m, n, k, accumulate)
		return
	}
	parallelFor(m, n*k, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ai := a[i*k : i*k+k]
			for j := 0; j < n; j++ {
				bj := b[j*k : j*k+k]
				var s F
				for p := range ai {
					s += ai[p] * bj[p]
				}
				if accumulate {
					c[i*n+j] += s
				} else {
					c[i*n+j] = s
				}
			}
		}
	})
}

// matmulNN: c[m,n] (+)= a[m,k] · b[k,n].
func matmulNN[F float](c, a, b []F, m, n, k int, accumulate bool) {
	if c32, ok := any(c).([]float32); ok {
		gemmNN(c32, any(a).([]float32), any(b).([]float32), m, n, k, accumulate)
		return
	}
	parallelFor(m, n*k, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ci := c[i*n : i*n+n]
			if !accumulate {
				clear(ci)
			}
			for p := 0; p < k; p++ {
				aip := a[i*k+p]
				bp := b[p*n : p*n+n]
				for j := range ci {
					ci[j] += aip * bp[j]
				}
			}
		}
	})
}

// matmulTN: c[m,n] (+)= a[k,m]ᵀ · b[k,n].
func matmulTN[F float](c, a, b []F, m, n, k int, accumulate bool) {
	if c32, ok := any(c).([]float32); ok {
		gemmTN(c32, any(a).([]float32), any(b).([]float32), m, n, k, accumulate)
		return
	}
	parallelFor(m, n*k, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ci := c[i*n : i*n+n]
			if !accumulate {
				clear(ci)
			}
			for p := 0; p < k; p++ {
				api := a[p*m+i]
				bp := b[p*n : p*n+n]
				for j := range ci {
					ci[j] += api * bp[j]
				}
			}
		}
	})
}

// ----------------------------------------------------------------------------
// embedding

// embeddingForward: out[N,H] = table[ids[n], :]. table is [V,H].
func embeddingForward[F float](out []F, table matrix[F], ids []int32, H int, q *quirks) {
	for n, id := range ids {
		table.rowsInto(out[n*H:(n+1)*H], int(id), int(id)+1)
	}
	if q.embeddingScaled {
		scale := F(math.Sqrt(float64(H)))
		for i := range out[:len(ids)*H] {
			out[i] *= scale
		}
	}
}

// embeddingBackward: gradTable[ids[n], :] += gradOut[n, :], in token order.
func embeddingBackward[F float](gradTable, gradOut []F, ids []int32, H int, q *quirks) {
	for n, id := range ids {
		dst := gradTable[int(id)*H : int(id)*H+H]
		for j, g := range gradOut[n*H : n*H+H] {
			if q.embeddingGradAssign {
				dst[j] = g
			} else {
				dst[j] += g
			}
		}
	}
}

// ----------------------------------------------------------------------------
// RMSNorm

// rmsNormForward: out[N,C] = w[C] · x / sqrt(mean(x²) + eps), rounding as
// torch does in float32 (eps added in F, 1/sqrt as two rounded steps, x·rstd
// first, then w·that). rstd[N] is saved for
// the backward pass.
func rmsNormForward[F float](out, rstd, x, w []F, N, C int, eps float64, q *quirks) {
	parallelFor(N, C, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			xn := x[n*C : n*C+C]
			var sum float64
			for _, v := range xn {
				sum += float64(v) * float64(v)
			}
			meanSq := F(sum / float64(C))
			// torch: rsqrt(variance + eps) = 1 / sqrt(·), each step rounded to F
			var r F
			if q.epsOutsideSqrt {
				r = 1 / (F(math.Sqrt(float64(meanSq))) + F(eps))
			} else {
				r = 1 / F(math.Sqrt(float64(meanSq+F(eps))))
			}
			rstd[n] = r
			on := out[n*C : n*C+C]
			for j, v := range xn {
				on[j] = w[j] * F(v*r)
			}
		}
	})
}

// rmsNormBackward, with y_j = w_j·x_j·r and r = (mean(x²)+eps)^-½:
//
//	gradX_j += r·w_j·g_j − r³/C · x_j · Σ_i g_i·w_i·x_i
//	gradW_j += Σ_n g_j·x_j·r
func rmsNormBackward[F float](gradX, gradW, gradOut, x, w, rstd []F, N, C int, q *quirks) {
	parallelFor(N, 4*C, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			xn, gn, dx := x[n*C:n*C+C], gradOut[n*C:n*C+C], gradX[n*C:n*C+C]
			r := rstd[n]
			var dot F
			for j := range xn {
				dot += gn[j] * w[j] * xn[j]
			}
			c := r * r * r / F(C) * dot
			if q.normGradNoMeanTerm {
				c = 0
			}
			for j := range xn {
				dx[j] += r*w[j]*gn[j] - c*xn[j]
			}
		}
	})
	parallelFor(C, 2*N, func(lo, hi int) {
		for n := 0; n < N; n++ {
			r := rstd[n]
			if q.normWeightGradNoRstd {
				r = 1
			}
			for j := lo; j < hi; j++ {
				gradW[j] += gradOut[n*C+j] * x[n*C+j] * r
			}
		}
	})
}

// ----------------------------------------------------------------------------
// RoPE (HF default: non-interleaved, rotate_half)

// ropeTable holds cos and sin [T, hd/2] for positions 0..T-1. The halves of
// HF's [T, hd] tables are identical, so half is enough.
type ropeTable[F float] struct {
	half     int
	cos, sin []F
}

// newRopeTable computes inv_freq_j = theta^(-2j/hd) and angle = t·inv_freq_j.
// For float32 it reproduces torch's float32 arithmetic step by step (the
// exponent, the power, the reciprocal and the product are each rounded to
// float32); for float64 it is exact to float64.
func newRopeTable[F float](T, hd int, theta float64) ropeTable[F] {
	half := hd / 2
	rt := ropeTable[F]{half: half, cos: make([]F, T*half), sin: make([]F, T*half)}
	_, single := any(F(0)).(float32)
	for j := 0; j < half; j++ {
		var invFreq float64
		if single {
			exponent := float32(2*j) / float32(hd)
			invFreq = float64(float32(1 / float64(float32(math.Pow(theta, float64(exponent))))))
		} else {
			invFreq = math.Pow(theta, -float64(2*j)/float64(hd))
		}
		for t := 0; t < T; t++ {
			angle := float64(t) * invFreq
			if single {
				angle = float64(float32(angle))
			}
			rt.cos[t*half+j] = F(math.Cos(angle))
			rt.sin[t*half+j] = F(math.Sin(angle))
		}
	}
	return rt
}

// ropeForward rotates x[B,T,heads,hd] in place: for j < hd/2,
//
//	x'_j       = x_j·cos − x_{j+hd/2}·sin
//	x'_{j+hd/2} = x_{j+hd/2}·cos + x_j·sin
//
// With q.interleavedRope the pairs are (2j, 2j+1) instead (a wrong variant).
func ropeForward[F float](x []F, rt ropeTable[F], B, T, heads int, q *quirks) {
	ropeApply(x, rt, B, T, heads, false, q)
}

// ropeBackward: the rotation is orthogonal, so gradX = R(−angle)·gradOut,
// applied in place to grad.
func ropeBackward[F float](grad []F, rt ropeTable[F], B, T, heads int, q *quirks) {
	ropeApply(grad, rt, B, T, heads, !q.ropeGradSameAngle, q)
}

func ropeApply[F float](x []F, rt ropeTable[F], B, T, heads int, inverse bool, q *quirks) {
	half := rt.half
	hd := 2 * half
	parallelFor(B*T, heads*hd*4, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			t := bt % T
			cs, sn := rt.cos[t*half:t*half+half], rt.sin[t*half:t*half+half]
			for h := 0; h < heads; h++ {
				v := x[(bt*heads+h)*hd : (bt*heads+h+1)*hd]
				for j := 0; j < half; j++ {
					i1, i2 := j, j+half
					if q.interleavedRope {
						i1, i2 = 2*j, 2*j+1
					}
					c, s := cs[j], sn[j]
					if inverse {
						s = -s
					}
					a, b := v[i1], v[i2]
					v[i1] = F(a*c) - F(b*s)
					v[i2] = F(b*c) + F(a*s)
				}
			}
		}
	})
}

// ----------------------------------------------------------------------------
// causal grouped-query attention

// attnShape describes one attention call.
type attnShape struct {
	B, T, nh, nkv, hd int
}

// kvHead is the KV head that query head h reads: h div (nh/nkv).
func (s attnShape) kvHead(h int, q *quirks) int {
	if q.gqaModMapping {
		return h % s.nkv
	}
	return h / (s.nh / s.nkv)
}

func (s attnShape) scale(q *quirks) float64 {
	if q.attnScaleOneOverHD {
		return 1 / float64(s.hd)
	}
	return 1 / math.Sqrt(float64(s.hd))
}

// headRows copies head h's rows out of x[B,T,heads,hd] for batch row b:
// dst[T,hd].
func headRows[F float](dst, x []F, b, h, T, heads, hd int) {
	for t := 0; t < T; t++ {
		copy(dst[t*hd:(t+1)*hd], x[((b*T+t)*heads+h)*hd:][:hd])
	}
}

// addHeadRows adds src[T,hd] into head h's rows of x[B,T,heads,hd].
func addHeadRows[F float](x, src []F, b, h, T, heads, hd int) {
	for t := 0; t < T; t++ {
		dst := x[((b*T+t)*heads+h)*hd:][:hd]
		for j, v := range src[t*hd : (t+1)*hd] {
			dst[j] += v
		}
	}
}

// attentionForward: for each batch row b and query head h,
//
//	att[b,h,t,u] = softmax_u≤t(q[b,t,h]·k[b,u,kvHead(h)] · hd^-½)
//	out[b,t,h]   = Σ_u att[b,h,t,u] · v[b,u,kvHead(h)]
//
// q, out: [B,T,nh,hd]; k, v: [B,T,nkv,hd]; att: [B,nh,T,T] saved for backward
// (entries above the diagonal are zero). The two products run as matrix
// products per (b, h).
func attentionForward[F float](out, att, q, k, v []F, s attnShape, qk *quirks) {
	B, T, nh, nkv, hd := s.B, s.T, s.nh, s.nkv, s.hd
	scale := F(s.scale(qk))
	parallelFor(B*nh, T*T*hd, func(lo, hi int) {
		qh, kh, vh, oh := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
		for bh := lo; bh < hi; bh++ {
			b, h := bh/nh, bh%nh
			kvh := s.kvHead(h, qk)
			headRows(qh, q, b, h, T, nh, hd)
			headRows(kh, k, b, kvh, T, nkv, hd)
			headRows(vh, v, b, kvh, T, nkv, hd)
			scores := att[bh*T*T : (bh+1)*T*T]
			matmulNT(scores, qh, kh, T, T, hd, false)
			for t := 0; t < T; t++ {
				row := scores[t*T : (t+1)*T]
				last := t
				if qk.noCausalMask {
					last = T - 1
				}
				maxScore := F(math.Inf(-1))
				for u := 0; u <= last; u++ {
					row[u] *= scale
					maxScore = max(maxScore, row[u])
				}
				var sum float64
				for u := 0; u <= last; u++ {
					e := math.Exp(float64(row[u] - maxScore))
					row[u] = F(e)
					sum += e
				}
				inv := F(1 / sum)
				for u := 0; u <= last; u++ {
					row[u] *= inv
				}
				clear(row[last+1:])
			}
			matmulNN(oh, scores, vh, T, hd, T, false)
			for t := 0; t < T; t++ {
				copy(out[((b*T+t)*nh+h)*hd:][:hd], oh[t*hd:(t+1)*hd])
			}
		}
	})
}

// attentionBackward accumulates gradQ, gradK, gradV from gradOut. With
// dp = gradOut·vᵀ and ds = att ⊙ (dp − Σ_u att·dp) · scale, per (b, h):
//
//	gradQ += ds · k
//	gradK += dsᵀ · q     (summed over the query heads of a group)
//	gradV += attᵀ · gradOut
//
// Work is split over (b, KV head) so that each gradK/gradV row has a single
// writer and a fixed summation order.
func attentionBackward[F float](gradQ, gradK, gradV, gradOut, att, q, k, v []F, s attnShape, qk *quirks) {
	B, T, nh, nkv, hd := s.B, s.T, s.nh, s.nkv, s.hd
	scale := F(s.scale(qk))
	parallelFor(B*nkv, T*T*hd*(nh/nkv)*5, func(lo, hi int) {
		kh, vh, qh, gh := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
		gk, gv, gq := make([]F, T*hd), make([]F, T*hd), make([]F, T*hd)
		dp := make([]F, T*T)
		for bk := lo; bk < hi; bk++ {
			b, kvh := bk/nkv, bk%nkv
			headRows(kh, k, b, kvh, T, nkv, hd)
			headRows(vh, v, b, kvh, T, nkv, hd)
			clear(gk)
			clear(gv)
			for h := 0; h < nh; h++ {
				if s.kvHead(h, qk) != kvh {
					continue
				}
				firstOfGroup := h == 0 || s.kvHead(h-1, qk) != kvh
				bh := b*nh + h
				p := att[bh*T*T : (bh+1)*T*T]
				headRows(qh, q, b, h, T, nh, hd)
				headRows(gh, gradOut, b, h, T, nh, hd)
				matmulNT(dp, gh, vh, T, T, hd, false)
				for t := 0; t < T; t++ {
					pr, dr := p[t*T:(t+1)*T], dp[t*T:(t+1)*T]
					var sum F
					for u := range pr {
						sum += pr[u] * dr[u]
					}
					if qk.softmaxGradNoSum {
						sum = 0
					}
					for u := range pr {
						dr[u] = pr[u] * (dr[u] - sum) * scale
					}
				}
				matmulNN(gq, dp, kh, T, hd, T, false)
				addHeadRows(gradQ, gq, b, h, T, nh, hd)
				if qk.gqaGradFirstHead && !firstOfGroup {
					continue
				}
				matmulTN(gk, dp, qh, T, hd, T, true)
				matmulTN(gv, p, gh, T, hd, T, true)
			}
			addHeadRows(gradK, gk, b, kvh, T, nkv, hd)
			addHeadRows(gradV, gv, b, kvh, T, nkv, hd)
		}
	})
}

// ----------------------------------------------------------------------------
// gated relu² MLP activation

// gluForward: out[N,I] = relu(gate)² · up  (silu(gate)·up with q.silu).
func gluForward[F float](out, gate, up []F, q *quirks) {
	parallelFor(len(out), 4, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := gate[i]
			var a F
			if q.silu {
				a = F(float64(g) / (1 + math.Exp(-float64(g))))
			} else if g > 0 {
				a = g * g
			}
			out[i] = a * up[i]
		}
	})
}

// gluBackward: gradGate += 2·relu(gate)·up·gradOut, gradUp += relu(gate)²·gradOut.
func gluBackward[F float](gradGate, gradUp, gradOut, gate, up []F, q *quirks) {
	parallelFor(len(gradOut), 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g, d := gate[i], gradOut[i]
			if q.silu {
				sig := F(1 / (1 + math.Exp(-float64(g))))
				gradGate[i] += d * up[i] * sig * (1 + g*(1-sig))
				gradUp[i] += d * g * sig
				continue
			}
			if g > 0 {
				if q.reluSqGradNoFactor2 {
					gradGate[i] += g * up[i] * d
				} else {
					gradGate[i] += 2 * g * up[i] * d
				}
				gradUp[i] += g * g * d
			}
		}
	})
}

// ----------------------------------------------------------------------------
// residual

// residualForward: out = a + b (out = b alone with dropA, a wrong variant).
func residualForward[F float](out, a, b []F, dropA bool) {
	if dropA {
		copy(out, b)
		return
	}
	for i := range out {
		out[i] = a[i] + b[i]
	}
}

// The residual's backward is the identity on both inputs; callers add the
// same gradient into both branches.

// ----------------------------------------------------------------------------
// mean next-token cross-entropy

// crossEntropyForward returns mean_{b,t<T-1} −log softmax(logits[b,t])[ids[b,t+1]]
// computed in float64. If gradLogits is not nil it receives d loss / d logits
// (overwritten; zero at the last position of each row).
//
// With q.lossNoShift (a wrong variant) position t is scored against ids[t].
func crossEntropyForward[F float](gradLogits, logits []F, ids []int32, B, T, V int, q *quirks) float64 {
	count := B * (T - 1)
	if q.lossNoShift {
		count = B * T
	}
	losses := make([]float64, B*T)
	parallelFor(B*T, 3*V, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			t := bt % T
			var g []F
			if gradLogits != nil {
				g = gradLogits[bt*V : bt*V+V]
				clear(g)
			}
			if t == T-1 && !q.lossNoShift {
				continue
			}
			row := logits[bt*V : bt*V+V]
			var target int
			if q.lossNoShift {
				target = int(ids[bt])
			} else {
				target = int(ids[bt+1])
			}
			maxLogit := math.Inf(-1)
			for _, z := range row {
				maxLogit = math.Max(maxLogit, float64(z))
			}
			var sum float64
			for _, z := range row {
				sum += math.Exp(float64(z) - maxLogit)
			}
			logSum := maxLogit + math.Log(sum)
			losses[bt] = logSum - float64(row[target])
			if g != nil {
				gradCount := float64(count)
				if q.lossGradSum {
					gradCount = 1
				}
				for i, z := range row {
					g[i] = F(math.Exp(float64(z)-logSum) / gradCount)
				}
				g[target] -= F(1 / gradCount)
			}
		}
	})
	var total float64
	for _, l := range losses {
		total += l
	}
	return total / float64(count)
}
