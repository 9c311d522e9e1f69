//go:build noasm || !amd64

package kernels

import "runtime"

// missingFeatures reports every SIMD path as missing: this build has no
// assembly.
func missingFeatures(p Path) []string {
	if p == Generic {
		return nil
	}
	if runtime.GOARCH != "amd64" {
		return []string{"amd64 (GOARCH is " + runtime.GOARCH + ")"}
	}
	return []string{"assembly (built with the noasm tag)"}
}

// matMulOn computes t.MatMul on path p; only the generic path exists here.
func (t *Ternary) matMulOn(_ Path, dst []int32, x []int8, tokens int) {
	t.matMulGeneric(dst, x, tokens)
}
