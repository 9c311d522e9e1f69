//go:build !noasm

package kernels

import "github.com/klauspost/cpuid/v2"

// aliasAVX512 says whether the avx512vnni path may run fillAliasAVX512:
// besides that path's features it needs AVX-512 DQ (VPMULLQ).
var aliasAVX512 = cpuid.CPU.Supports(cpuid.AVX512F, cpuid.AVX512DQ)

// fillAliasAVX512 writes 8·groups elements to dst: lane l of each group of 8
// computes the elements whose state (key + (i+1)·γ) is state[l] plus a
// multiple of 8γ. packed and entry are the table's arrays.
//
//go:noescape
func fillAliasAVX512(dst *uint16, groups int, packed, entry *uint64, state *[8]uint64)

// fillAliasOn runs FillAlias on path p.
func fillAliasOn(p Path, dst []uint16, t *AliasTable, key, first uint64) {
	if p != AVX512VNNI || !aliasAVX512 || len(dst) < 8 {
		fillAliasGeneric(dst, t, key, first)
		return
	}
	groups := len(dst) / 8
	var state [8]uint64
	for l := range state {
		state[l] = key + (first+uint64(l)+1)*aliasGamma
	}
	fillAliasAVX512(&dst[0], groups, &t.packed[0], &t.entry[0], &state)
	done := 8 * groups
	fillAliasGeneric(dst[done:], t, key, first+uint64(done))
}
