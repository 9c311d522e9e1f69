package ops

import "math"

// ----------------------------------------------------------------------------
// lm_head (never quantized)

// headChunkRows bounds the rows of a non-dense lm_head converted at once.
const headChunkRows = 4096

// Head: logits[N,V] = x[N,H] · Wᵀ, W[V,H].
func Head[F Float](logits, x []F, w Matrix[F], N, V, H int) {
	if wd := w.Dense(); wd != nil {
		MatmulNT(logits, x, wd, N, V, H, false)
		return
	}
	rows := make([]F, headChunkRows*H)
	part := make([]F, N*headChunkRows)
	for v0 := 0; v0 < V; v0 += headChunkRows {
		c := min(headChunkRows, V-v0)
		w.RowsInto(rows, v0, v0+c)
		MatmulNT(part, x, rows[:c*H], N, c, H, false)
		for n := 0; n < N; n++ {
			copy(logits[n*V+v0:n*V+v0+c], part[n*c:n*c+c])
		}
	}
}

// HeadBackward: gradX[N,H] += gradLogits·W and gradW[V,H] = gradLogitsᵀ·x
// (overwritten, so that a fresh multi-gigabyte buffer is never read before
// it is written: reading untouched pages maps the shared zero page, and the
// copy-on-write faults that follow cost more than the product).
func HeadBackward[F Float](gradX, gradW, gradLogits, x []F, w Matrix[F], N, V, H int) {
	if wd := w.Dense(); wd != nil {
		MatmulNN(gradX, gradLogits, wd, N, H, V, true)
		MatmulTN(gradW, gradLogits, x, V, H, N, false)
		return
	}
	rows := make([]F, headChunkRows*H)
	part := make([]F, N*headChunkRows)
	for v0 := 0; v0 < V; v0 += headChunkRows {
		c := min(headChunkRows, V-v0)
		w.RowsInto(rows, v0, v0+c)
		for n := 0; n < N; n++ {
			copy(part[n*c:n*c+c], gradLogits[n*V+v0:n*V+v0+c])
		}
		MatmulNN(gradX, part[:N*c], rows[:c*H], N, H, c, true)
		MatmulTN(gradW[v0*H:(v0+c)*H], part[:N*c], x, c, H, N, false)
	}
}

// ----------------------------------------------------------------------------
// mean next-token cross-entropy

// CrossEntropy returns mean_{b,t<T-1} −log softmax(logits[b,t])[ids[b,t+1]]
// computed in float64. If gradLogits is not nil it receives d loss / d logits
// (overwritten; zero at the last position of each row):
//
//	gradLogits[b,t] = (softmax(logits[b,t]) − onehot(ids[b,t+1])) / (B·(T−1))
func CrossEntropy[F Float](gradLogits, logits []F, ids []int32, B, T, V int) float64 {
	count := B * (T - 1)
	losses := make([]float64, B*T)
	ParallelFor(B*T, 3*V, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			var g []F
			if gradLogits != nil {
				g = gradLogits[bt*V : bt*V+V]
				clear(g)
			}
			if bt%T == T-1 {
				continue
			}
			row := logits[bt*V : bt*V+V]
			target := int(ids[bt+1])
			logSum := LogSumExp(row)
			losses[bt] = logSum - float64(row[target])
			if g != nil {
				for i, z := range row {
					g[i] = F(math.Exp(float64(z)-logSum) / float64(count))
				}
				g[target] -= F(1 / float64(count))
			}
		}
	})
	var total float64
	for _, l := range losses {
		total += l
	}
	return total / float64(count)
}

// LogSumExp is log Σ exp(row) in float64, shifted by the row's maximum.
func LogSumExp[F Float](row []F) float64 {
	maxLogit := math.Inf(-1)
	for _, z := range row {
		maxLogit = math.Max(maxLogit, float64(z))
	}
	var sum float64
	for _, z := range row {
		sum += math.Exp(float64(z) - maxLogit)
	}
	return maxLogit + math.Log(sum)
}
