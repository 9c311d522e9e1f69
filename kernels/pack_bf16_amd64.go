//go:build !noasm

package kernels

// packBF16AVX512 packs blocks ≥ 1 whole blocks of src into dst, each
// weight's code being bf16Cut{plus, minus, n}.code: the ranges are compared
// on 32 bf16 patterns at a time (AVX-512 BW), and each plane's ±1 masks add
// or subtract 4^k from the zero codes 0x55.
//
//go:noescape
func packBF16AVX512(dst *uint8, src *uint16, blocks int, plus, minus, n uint16)

// packBF16On returns path p's packBlocksBF16 at scale. The avx512vnni path
// has the AVX-512 F and BW that packBF16AVX512 needs; the other paths use
// the pure-Go table.
func packBF16On(p Path, scale float32) packBlocksBF16 {
	if p != AVX512VNNI {
		return packBF16Generic(scale)
	}
	c := newBF16Cut(scale)
	return func(dst []uint8, src []uint16) {
		blocks := len(src) / blockCols
		if blocks == 0 {
			return
		}
		_ = dst[blocks*blockBytes-1]
		packBF16AVX512(&dst[0], &src[0], blocks, c.plus, c.minus, c.n)
	}
}
