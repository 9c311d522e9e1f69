package ops

import "math"

// ----------------------------------------------------------------------------
// RoPE (HF default: non-interleaved, rotate_half)

// RopeTable holds cos and sin [T, hd/2] for positions 0..T-1. The halves of
// HF's [T, hd] tables are identical, so half is enough.
type RopeTable[F Float] struct {
	Half     int
	Cos, Sin []F
}

// NewRopeTable computes inv_freq_j = theta^(-2j/hd) and angle = t·inv_freq_j.
// For float32 it reproduces torch's float32 arithmetic step by step (the
// exponent, the power, the reciprocal and the product are each rounded to
// float32); for float64 it is exact to float64.
func NewRopeTable[F Float](T, hd int, theta float64) RopeTable[F] {
	half := hd / 2
	rt := RopeTable[F]{Half: half, Cos: make([]F, T*half), Sin: make([]F, T*half)}
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
			rt.Cos[t*half+j] = F(math.Cos(angle))
			rt.Sin[t*half+j] = F(math.Sin(angle))
		}
	}
	return rt
}

// Rope rotates x[B,T,heads,hd] in place by the angle of each position: for
// j < hd/2,
//
//	x'_j        = x_j·cos − x_{j+hd/2}·sin
//	x'_{j+hd/2} = x_{j+hd/2}·cos + x_j·sin
func Rope[F Float](x []F, rt RopeTable[F], B, T, heads int) {
	rotate(x, rt, B, T, heads, 1)
}

// RopeBackward: the rotation is orthogonal, so gradX = R(−angle)·gradOut,
// applied in place to grad.
func RopeBackward[F Float](grad []F, rt RopeTable[F], B, T, heads int) {
	rotate(grad, rt, B, T, heads, -1)
}

// rotate rotates each (j, j+hd/2) pair of x by sign·angle.
func rotate[F Float](x []F, rt RopeTable[F], B, T, heads int, sign F) {
	half := rt.Half
	hd := 2 * half
	ParallelFor(B*T, heads*hd*4, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			t := bt % T
			cs, sn := rt.Cos[t*half:t*half+half], rt.Sin[t*half:t*half+half]
			for h := 0; h < heads; h++ {
				v := x[(bt*heads+h)*hd : (bt*heads+h+1)*hd]
				for j := 0; j < half; j++ {
					c, s := cs[j], sign*sn[j]
					a, b := v[j], v[j+half]
					v[j] = F(a*c) - F(b*s)
					v[j+half] = F(b*c) + F(a*s)
				}
			}
		}
	})
}
