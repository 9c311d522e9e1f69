package kernels

import (
	"fmt"
	"math"
	"sort"
)

// Packing bf16 weights straight into codes. The pure-Go path looks each
// weight's code up in a table of Ternarize's result on all 65536 bf16
// values. The SIMD path compares bit patterns with a threshold instead
// (bf16Cut), which is exact for this reason: Ternarize gives
// roundClamp(float32(v*scale), -1, 1), which is non-zero exactly when
// |float32(v*scale)| > 1/2 (0.5 rounds half to even to 0; a NaN product
// gives 0). For a fixed scale that magnitude never decreases as |v| grows
// (the exact product grows, and rounding to float32 is monotone; the NaN
// products 0·Inf and Inf·0 come at |v| = 0, or at a zero scale where every
// weight gives 0), and the bf16 magnitudes 0 … +Inf order like their bit
// patterns 0x0000 … 0x7f80 without the sign. So the weights that become
// ±1 are the magnitudes from a threshold pattern up to +Inf; NaN patterns
// (above 0x7f80) become 0, as in Ternarize. The sign of the code is that
// of v·scale. The tests check this on every pattern at many scales.

// bf16Cut is Ternarize at one scale as ranges of bf16 bit patterns: the n
// patterns plus, plus+1, … (wrapping at 2^16) become +1, the n from minus
// on become -1, every other pattern 0.
type bf16Cut struct {
	plus, minus, n uint16
}

// newBF16Cut returns the cut of Ternarize at scale: the threshold is the
// smallest magnitude pattern whose value Ternarize makes non-zero, found by
// bisection on Ternarize's own arithmetic.
func newBF16Cut(scale float32) bf16Cut {
	const inf = 0x7f80 // +Inf, the largest magnitude that is not NaN
	threshold := sort.Search(inf+1, func(m int) bool {
		return ternarize(bf16ToFloat32(uint16(m)), scale) != 0
	})
	positive, negative := uint16(threshold), uint16(threshold)|0x8000
	if scale < 0 {
		positive, negative = negative, positive
	}
	return bf16Cut{plus: positive, minus: negative, n: uint16(inf + 1 - threshold)}
}

// code returns the stored code u = w+1 of the bf16 weight b, as the SIMD
// code computes it: 2 for +1, 0 for -1, 1 for 0. The differences wrap, so
// each test is one range check; the ranges do not overlap.
func (c bf16Cut) code(b uint16) uint8 {
	var u uint8 = 1
	if b-c.plus < c.n {
		u = 2
	}
	if b-c.minus < c.n {
		u = 0
	}
	return u
}

// ternarize is Ternarize of one weight.
func ternarize(v, scale float32) int8 { return roundClamp(float32(v*scale), -1, 1) }

func bf16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// PackTernaryBF16 packs the ternary values of the bf16 weights w [rows,
// cols], row-major, at the given weight scale: the result is
// PackTernary(Ternarize(w as float32, scale), rows, cols), computed from
// the bf16 bit patterns without the int8 copy (every pattern, NaN and
// infinities included, gives what Ternarize gives). It fails when rows or
// cols is negative or len(w) != rows*cols. Rows are packed in parallel on
// the active path; every path and thread count gives the same bytes.
func PackTernaryBF16(w []uint16, rows, cols int, scale float32) (*Ternary, error) {
	return PackTernaryBF16Path(ActivePath(), w, rows, cols, scale)
}

// PackTernaryBF16Path is PackTernaryBF16 on path p, leaving the active path
// alone. It fails when p cannot run here.
func PackTernaryBF16Path(p Path, w []uint16, rows, cols int, scale float32) (*Ternary, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	if rows < 0 || cols < 0 {
		return nil, fmt.Errorf("kernels: PackTernaryBF16: negative shape [%d, %d]", rows, cols)
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("kernels: PackTernaryBF16: len(w) = %d, want rows*cols = %d*%d = %d", len(w), rows, cols, rows*cols)
	}
	t := allocTernary(rows, cols)
	if rows == 0 || cols == 0 {
		t.padRows()
		return t, nil
	}
	pack := packBF16On(p, scale)
	parallelRows(rows, rows*cols, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			t.packRowBF16(r, w[r*cols:(r+1)*cols], pack)
		}
	})
	t.padRows()
	return t, nil
}

// packBlocksBF16 packs the whole blocks of bf16 weights in src into dst,
// a block's 64 bytes per 256 weights; len(dst) = len(src)/4.
type packBlocksBF16 func(dst []uint8, src []uint16)

// packRowBF16 writes row r, every byte of it: the last partial block is
// packed from a copy padded with +0, which every scale makes 0 (code 1).
func (t *Ternary) packRowBF16(r int, row []uint16, pack packBlocksBF16) {
	dst := t.packed[r*t.rowBytes() : (r+1)*t.rowBytes()]
	full := len(row) / blockCols
	pack(dst[:full*blockBytes], row[:full*blockCols])
	if full < t.blocks {
		var tail [blockCols]uint16
		copy(tail[:], row[full*blockCols:])
		pack(dst[full*blockBytes:], tail[:])
	}
}

// packBF16Generic returns the pure-Go packBlocksBF16 at scale: a table
// holds the code of every bf16 pattern, and byte j of a block the codes of
// columns j, 64+j, 128+j and 192+j.
func packBF16Generic(scale float32) packBlocksBF16 {
	codes := new([1 << 16]uint8)
	for b := range codes {
		codes[b] = uint8(ternarize(bf16ToFloat32(uint16(b)), scale) + 1)
	}
	return func(dst []uint8, src []uint16) {
		for b := range len(src) / blockCols {
			src := src[b*blockCols : (b+1)*blockCols]
			out := dst[b*blockBytes : (b+1)*blockBytes]
			for j := range laneCols {
				out[j] = codes[src[j]] | codes[src[laneCols+j]]<<2 | codes[src[2*laneCols+j]]<<4 | codes[src[3*laneCols+j]]<<6
			}
		}
	}
}
