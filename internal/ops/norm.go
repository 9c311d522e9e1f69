package ops

import "math"

// ----------------------------------------------------------------------------
// RMSNorm

// RMSNorm: out[N,C] = w[C] · x / sqrt(mean(x²) + eps), rounding as torch
// does in float32 (eps added in F, 1/sqrt as two rounded steps, x·rstd
// first, then w·that). rstd[N] is saved for the backward pass.
func RMSNorm[F Float](out, rstd, x, w []F, N, C int, eps float64) {
	ParallelFor(N, C, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			xn := x[n*C : n*C+C]
			var sum float64
			for _, v := range xn {
				sum += float64(v) * float64(v)
			}
			meanSq := F(sum / float64(C))
			// torch: rsqrt(variance + eps) = 1 / sqrt(·), each step rounded to F
			r := 1 / F(math.Sqrt(float64(meanSq+F(eps))))
			rstd[n] = r
			on := out[n*C : n*C+C]
			for j, v := range xn {
				on[j] = w[j] * F(v*r)
			}
		}
	})
}

// RMSNormBackward, with y_j = w_j·x_j·r and r = (mean(x²)+eps)^-½:
//
//	gradX_j += r·w_j·g_j − r³/C · x_j · Σ_i g_i·w_i·x_i
//	gradW_j += Σ_n g_j·x_j·r
func RMSNormBackward[F Float](gradX, gradW, gradOut, x, w, rstd []F, N, C int) {
	ParallelFor(N, 4*C, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			xn, gn, dx := x[n*C:n*C+C], gradOut[n*C:n*C+C], gradX[n*C:n*C+C]
			r := rstd[n]
			var dot F
			for j := range xn {
				dot += gn[j] * w[j] * xn[j]
			}
			c := r * r * r / F(C) * dot
			for j := range xn {
				dx[j] += r*w[j]*gn[j] - c*xn[j]
			}
		}
	})
	ParallelFor(C, 2*N, func(lo, hi int) {
		for n := 0; n < N; n++ {
			r := rstd[n]
			for j := lo; j < hi; j++ {
				gradW[j] += gradOut[n*C+j] * x[n*C+j] * r
			}
		}
	})
}
