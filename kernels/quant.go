package kernels

import (
	"fmt"
	"math"
)

// actQuantFloor keeps a zero row from dividing by zero in act_quant and
// weight_quant, as torch's clamp(min=1e-5) does.
const actQuantFloor = float32(1e-5)

// QuantizeActivations is act_quant per row: for each row r of x [rows, cols],
// scale[r] = 127 / max(max_c |x[r,c]|, 1e-5) (float32 arithmetic), and
// q[r,c] = clamp(roundHalfToEven(x[r,c]*scale[r]), -128, 127). The product
// x*scale is rounded to float32 before rounding to an integer (torch fp32
// semantics). A NaN input quantizes to 0.
//
// The loop, which is also the body:
//
//	for r := 0; r < rows; r++ {
//		maxAbs := float32(0)
//		for c := 0; c < cols; c++ {
//			maxAbs = max(maxAbs, |x[r*cols+c]|)
//		}
//		scales[r] = 127 / max(maxAbs, 1e-5)
//		for c := 0; c < cols; c++ {
//			q[r*cols+c] = roundClamp(float32(x[r*cols+c]*scales[r]), -128, 127)
//		}
//	}
//
// It panics when len(x) or len(q) is not rows*cols or len(scales) is not rows.
func QuantizeActivations(q []int8, scales []float32, x []float32, rows, cols int) {
	if err := checkQuantizeShapes(q, scales, x, rows, cols); err != nil {
		panic(err)
	}
	// Rows are independent, so splitting them across threads changes no bit.
	parallelRows(rows, rows*cols, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			quantizeRow(q[r*cols:(r+1)*cols], &scales[r], x[r*cols:(r+1)*cols])
		}
	})
}

// quantizeRow is one row of QuantizeActivations.
func quantizeRow(out []int8, scaleOut *float32, row []float32) {
	out = out[:len(row)]
	// For non-NaN values, |v| orders like the bits of |v| read as an
	// unsigned integer, so the maximum is taken on the bits.
	var maxBits uint32
	for _, v := range row {
		maxBits = max(maxBits, math.Float32bits(v)&0x7fffffff)
	}
	if maxBits >= 0x7f800000 {
		// an infinity or a NaN: the reference loop, NaN semantics and all
		quantizeRowRef(out, scaleOut, row)
		return
	}
	scale := 127 / max(math.Float32frombits(maxBits), actQuantFloor)
	*scaleOut = scale
	// Every |v| ≤ maxAbs, so |v*scale| ≤ 127 up to a rounding of the
	// product, far below 2^22: adding and subtracting 1.5·2^23 in float32
	// rounds it to an integer half to even, exactly as math.RoundToEven.
	const magic = float32(1 << 23 * 1.5)
	for c, v := range row {
		r := int32((float32(v*scale) + magic) - magic)
		out[c] = int8(min(max(r, -128), 127))
	}
}

// quantizeRowRef is the reference loop for one row.
func quantizeRowRef(out []int8, scaleOut *float32, row []float32) {
	maxAbs := float32(0)
	for _, v := range row {
		maxAbs = max(maxAbs, float32(math.Abs(float64(v))))
	}
	scale := 127 / max(maxAbs, actQuantFloor)
	*scaleOut = scale
	for c, v := range row {
		out[c] = roundClamp(float32(v*scale), -128, 127)
	}
}

// QuantizeActivationsPath runs QuantizeActivations as path p would. The
// quantizer has only a pure-Go implementation, so every supported path runs
// the same code; the path is still checked so that callers testing "every
// path" fail on an unsupported one.
func QuantizeActivationsPath(p Path, q []int8, scales []float32, x []float32, rows, cols int) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if err := checkQuantizeShapes(q, scales, x, rows, cols); err != nil {
		return err
	}
	QuantizeActivations(q, scales, x, rows, cols)
	return nil
}

func checkQuantizeShapes(q []int8, scales []float32, x []float32, rows, cols int) error {
	switch {
	case rows < 0 || cols < 0:
		return fmt.Errorf("kernels: QuantizeActivations: negative shape [%d, %d]", rows, cols)
	case len(x) != rows*cols:
		return fmt.Errorf("kernels: QuantizeActivations: len(x) = %d, want rows*cols = %d*%d = %d", len(x), rows, cols, rows*cols)
	case len(q) != rows*cols:
		return fmt.Errorf("kernels: QuantizeActivations: len(q) = %d, want rows*cols = %d*%d = %d", len(q), rows, cols, rows*cols)
	case len(scales) != rows:
		return fmt.Errorf("kernels: QuantizeActivations: len(scales) = %d, want rows = %d", len(scales), rows)
	}
	return nil
}

// WeightScale is the online BitNet weight scale 1/max(mean|W|, 1e-5). The
// mean over the whole matrix is accumulated in float64, rounded to float32,
// floored at 1e-5, and inverted in float32 as torch does on an fp32 tensor.
// An empty w has mean 0 and scale 1e5.
func WeightScale(w []float32) float32 {
	var sum float64
	for _, v := range w {
		sum += math.Abs(float64(v))
	}
	mean := float32(0)
	if len(w) > 0 {
		mean = float32(sum / float64(len(w)))
	}
	return 1 / max(mean, actQuantFloor)
}

// Ternarize writes clamp(roundHalfToEven(w*scale), -1, 1) (product rounded to
// float32 first); a NaN weight becomes 0. It is, loop and body:
//
//	for i := range w {
//		dst[i] = roundClamp(float32(w[i]*scale), -1, 1)
//	}
//
// It panics when len(dst) != len(w).
func Ternarize(dst []int8, w []float32, scale float32) {
	if len(dst) != len(w) {
		panic(fmt.Errorf("kernels: Ternarize: len(dst) = %d, want len(w) = %d", len(dst), len(w)))
	}
	for i, v := range w {
		dst[i] = ternarize(v, scale)
	}
}

// roundClamp rounds v half to even and clamps it to [lo, hi]; NaN gives 0.
func roundClamp(v float32, lo, hi int8) int8 {
	r := math.RoundToEven(float64(v))
	switch {
	case r >= float64(hi):
		return hi
	case r <= float64(lo):
		return lo
	case r == r:
		return int8(r)
	}
	return 0
}
