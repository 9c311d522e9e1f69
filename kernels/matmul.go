package kernels

import "fmt"

// MatMul computes dst[tok*Rows + r] = Σ_c W[r,c] * int32(x[tok*Cols + c]) for
// tok < tokens (GEMV when tokens == 1, GEMM otherwise) on the active path,
// split across rows over up to runtime.GOMAXPROCS(0) goroutines. int32 results
// are exact, so every path and thread count gives identical output. It panics
// when len(x) < tokens*Cols or len(dst) < tokens*Rows.
func (t *Ternary) MatMul(dst []int32, x []int8, tokens int) {
	if err := t.checkMatMul(dst, x, tokens); err != nil {
		panic(err)
	}
	t.matMulOn(ActivePath(), dst, x, tokens)
}

// MatMulPath is MatMul on path p, leaving the active path alone. It fails
// when p cannot run here or the shapes are wrong.
func (t *Ternary) MatMulPath(p Path, dst []int32, x []int8, tokens int) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if err := t.checkMatMul(dst, x, tokens); err != nil {
		return err
	}
	t.matMulOn(p, dst, x, tokens)
	return nil
}

func (t *Ternary) checkMatMul(dst []int32, x []int8, tokens int) error {
	switch {
	case tokens < 0:
		return fmt.Errorf("kernels: MatMul: tokens = %d, want >= 0", tokens)
	case len(x) < tokens*t.Cols:
		return fmt.Errorf("kernels: MatMul [%d, %d]: len(x) = %d, want tokens*Cols = %d*%d = %d", t.Rows, t.Cols, len(x), tokens, t.Cols, tokens*t.Cols)
	case len(dst) < tokens*t.Rows:
		return fmt.Errorf("kernels: MatMul [%d, %d]: len(dst) = %d, want tokens*Rows = %d*%d = %d", t.Rows, t.Cols, len(dst), tokens, t.Rows, tokens*t.Rows)
	}
	return nil
}

// matMulGeneric is the pure-Go path, computing the reference loop
//
//	for tok := 0; tok < tokens; tok++ {
//		for r := 0; r < t.Rows; r++ {
//			var sum int32
//			for c := 0; c < t.Cols; c++ {
//				sum += int32(t.weight(r, c)) * int32(x[tok*t.Cols+c])
//			}
//			dst[tok*t.Rows+r] = sum
//		}
//	}
//
// with the loops over tokens and rows swapped, so that each row is decoded
// once (decodeRow is weight(r, c) for every c) and serves every token, and
// split across goroutines by rows.
func (t *Ternary) matMulGeneric(dst []int32, x []int8, tokens int) {
	parallelRows(t.Rows, t.Rows*t.Cols*tokens, func(r0, r1 int) {
		row := make([]int8, t.Cols)
		for r := r0; r < r1; r++ {
			t.decodeRow(r, row)
			for tok := 0; tok < tokens; tok++ {
				xs := x[tok*t.Cols : (tok+1)*t.Cols]
				xs = xs[:len(row)]
				var sum int32
				for c, w := range row {
					sum += int32(w) * int32(xs[c])
				}
				dst[tok*t.Rows+r] = sum
			}
		}
	})
}
