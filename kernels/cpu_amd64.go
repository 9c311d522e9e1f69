//go:build !noasm

package kernels

import "github.com/klauspost/cpuid/v2"

// simdKernels holds the assembly primitives of one SIMD path. Both work on
// groups of four packed rows and compute Σ_c u[r,c]·x[c] - sumX, where
// u = w+1 ∈ {0,1,2} is the stored code and sumX = Σ_c x[c] undoes the +1.
type simdKernels struct {
	// gemv writes, for g < rowGroups and i < 4,
	//	dst[4*g+i] = Σ_{c < 256*blocks} u[4*g+i, c]·x[c] - sumX
	gemv func(dst *int32, w *uint8, x *int8, rowGroups, blocks int, sumX int32)
	// gemm writes, for g < rowGroups, i < 4 and tok < 4, with x holding four
	// tokens of 256*blocks columns each,
	//	dst[tok*dstStride+4*g+i] = Σ_c u[4*g+i, c]·x[tok*256*blocks+c] - sums[tok]
	gemm func(dst *int32, dstStride int, w *uint8, x *int8, sums *int32, rowGroups, blocks int)
}

// pathFeatures lists the cpuid features each SIMD path needs.
var pathFeatures = map[Path][]cpuid.FeatureID{
	AVX2:       {cpuid.AVX2},
	AVX512VNNI: {cpuid.AVX512F, cpuid.AVX512BW, cpuid.AVX512VNNI},
}

var pathKernels = map[Path]simdKernels{
	AVX2:       {gemv: gemvAVX2, gemm: gemmAVX2},
	AVX512VNNI: {gemv: gemvVNNI, gemm: gemmVNNI},
}

// missingFeatures returns the CPU features p needs that this machine lacks.
func missingFeatures(p Path) []string {
	var missing []string
	for _, f := range pathFeatures[p] {
		if !cpuid.CPU.Supports(f) {
			missing = append(missing, f.String())
		}
	}
	return missing
}

// matMulOn computes t.MatMul on path p.
func (t *Ternary) matMulOn(p Path, dst []int32, x []int8, tokens int) {
	k, ok := pathKernels[p]
	if !ok {
		t.matMulGeneric(dst, x, tokens)
		return
	}
	t.matMulSIMD(&k, dst, x, tokens)
}
