//go:build !noasm

package kernels

// Assembly primitives; see simdKernels for what each computes.

//go:noescape
func gemvAVX2(dst *int32, w *uint8, x *int8, rowGroups, blocks int, sumX int32)

//go:noescape
func gemmAVX2(dst *int32, dstStride int, w *uint8, x *int8, sums *int32, rowGroups, blocks int)

//go:noescape
func gemvVNNI(dst *int32, w *uint8, x *int8, rowGroups, blocks int, sumX int32)

//go:noescape
func gemmVNNI(dst *int32, dstStride int, w *uint8, x *int8, sums *int32, rowGroups, blocks int)

// tokenGroup is the number of tokens a gemm call computes.
const tokenGroup = 4

// rowsPerPass bounds the rows whose weights one pass over all tokens reuses,
// so that they stay in L2 (64 rows of 6912 columns are 108 KiB).
const rowsPerPass = 64

// matMulSIMD runs t.MatMul with the primitives k. The activations are copied
// only when Cols is not a whole number of blocks, padding each token with
// zeros; Σx per token undoes the +1 of the stored codes.
func (t *Ternary) matMulSIMD(k *simdKernels, dst []int32, x []int8, tokens int) {
	if tokens == 0 {
		return
	}
	if t.blocks == 0 {
		clear(dst[:tokens*t.Rows])
		return
	}
	paddedCols := t.blocks * blockCols
	sums := make([]int32, tokens)
	for tok := range sums {
		for _, v := range x[tok*t.Cols : (tok+1)*t.Cols] {
			sums[tok] += int32(v)
		}
	}
	xp := x
	if paddedCols != t.Cols {
		xp = make([]int8, tokens*paddedCols)
		for tok := 0; tok < tokens; tok++ {
			copy(xp[tok*paddedCols:], x[tok*t.Cols:(tok+1)*t.Cols])
		}
	}
	rowBytes := t.rowBytes()
	parallelRows(t.Rows, t.Rows*paddedCols*tokens, func(r0, r1 int) {
		for rs := r0; rs < r1; rs += rowsPerPass {
			groups := min(rowsPerPass, r1-rs) / rowGroup
			if groups == 0 {
				break
			}
			w := &t.packed[rs*rowBytes]
			tok := 0
			for ; tok+tokenGroup <= tokens; tok += tokenGroup {
				k.gemm(&dst[tok*t.Rows+rs], t.Rows, w, &xp[tok*paddedCols], &sums[tok], groups, t.blocks)
			}
			for ; tok < tokens; tok++ {
				k.gemv(&dst[tok*t.Rows+rs], w, &xp[tok*paddedCols], groups, t.blocks, sums[tok])
			}
		}
		// The last chunk may end inside a row group: compute the whole group
		// from the zero-padded rows into scratch and keep the real rows.
		tail := (r1 - r0) % rowGroup
		if tail == 0 {
			return
		}
		rs := r1 - tail
		w := &t.packed[rs*rowBytes]
		var scratch [tokenGroup * rowGroup]int32
		tok := 0
		for ; tok+tokenGroup <= tokens; tok += tokenGroup {
			k.gemm(&scratch[0], rowGroup, w, &xp[tok*paddedCols], &sums[tok], 1, t.blocks)
			for j := 0; j < tokenGroup; j++ {
				copy(dst[(tok+j)*t.Rows+rs:(tok+j)*t.Rows+r1], scratch[j*rowGroup:])
			}
		}
		for ; tok < tokens; tok++ {
			k.gemv(&scratch[0], w, &xp[tok*paddedCols], 1, t.blocks, sums[tok])
			copy(dst[tok*t.Rows+rs:tok*t.Rows+r1], scratch[:tail])
		}
	})
}
