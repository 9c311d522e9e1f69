//go:build amd64 && !noasm

package sgemm

import "github.com/klauspost/cpuid/v2"

func bestKernel() kernel {
	ks := kernels()
	return ks[0]
}

// kernels lists every kernel usable on this machine, best first.
func kernels() []kernel {
	var ks []kernel
	if cpuid.CPU.Supports(cpuid.AVX512F) {
		ks = append(ks, avx512Kernel)
	}
	if cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3) {
		ks = append(ks, avx2Kernel)
	}
	return append(ks, genericKernel)
}
