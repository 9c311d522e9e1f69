package kernels

import (
	"fmt"
	"runtime"
	"sync"
)

// Packed layout. Each row is cut into blocks of blockCols columns; a block is
// stored in blockBytes bytes, where byte j holds, at bits 2k..2k+1, the code
// u = w+1 ∈ {0,1,2} of column 64k+j of the block (k < 4, j < 64). One 64-byte
// load and three shifts give four vectors of 64 consecutive weights (AVX-512),
// and each 32-byte half gives four vectors of 32 (AVX2). Cols is padded up to
// a whole block and Rows up to a whole rowGroup with code 1 (weight 0).
const (
	blockCols  = 256
	blockBytes = blockCols / 4
	laneCols   = blockCols / 4 // columns per 2-bit plane of a block
	rowGroup   = 4             // rows the kernels compute at once
	zeroCode   = 0b01_01_01_01 // four weights of 0
)

// Ternary is a ternary weight matrix [Rows, Cols] packed 2 bits per weight in
// a layout chosen for the kernels. Rows and Cols must not be changed.
type Ternary struct {
	Rows, Cols int
	blocks     int     // 256-column blocks per row: ceil(Cols/256)
	packed     []uint8 // [ceil(Rows/4)*4][blocks*64] codes, see blockCols
}

// newTernary returns a Ternary [rows, cols] of zero weights.
func newTernary(rows, cols int) *Ternary {
	t := allocTernary(rows, cols)
	for i := range t.packed {
		t.packed[i] = zeroCode
	}
	return t
}

// allocTernary returns a Ternary [rows, cols] whose packed bytes are yet to
// be written: the caller writes every byte of rows 0 … rows-1 and then
// calls padRows.
func allocTernary(rows, cols int) *Ternary {
	t := &Ternary{Rows: rows, Cols: cols, blocks: (cols + blockCols - 1) / blockCols}
	paddedRows := (rows + rowGroup - 1) / rowGroup * rowGroup
	t.packed = make([]uint8, paddedRows*t.rowBytes())
	return t
}

// padRows writes weight 0 into the rows past Rows, up to a whole rowGroup.
func (t *Ternary) padRows() {
	for i := t.Rows * t.rowBytes(); i < len(t.packed); i++ {
		t.packed[i] = zeroCode
	}
}

// rowBytes is the stride of one packed row.
func (t *Ternary) rowBytes() int { return t.blocks * blockBytes }

// codeAt returns the byte and bit shift holding weight (r, c).
func (t *Ternary) codeAt(r, c int) (index int, shift uint) {
	block, inBlock := c/blockCols, c%blockCols
	return r*t.rowBytes() + block*blockBytes + inBlock%laneCols, uint(2 * (inBlock / laneCols))
}

// weight returns W[r, c] ∈ {-1, 0, 1}.
func (t *Ternary) weight(r, c int) int8 {
	i, shift := t.codeAt(r, c)
	return int8(t.packed[i]>>shift&3) - 1
}

// decodeRow writes row r into dst [Cols]; it is weight(r, c) for every c,
// a whole block of four 64-column planes at a time (packBlock undone), then
// the columns of the last partial block one by one.
func (t *Ternary) decodeRow(r int, dst []int8) {
	packedRow := t.packed[r*t.rowBytes() : (r+1)*t.rowBytes()]
	full := len(dst) / blockCols
	for b := range full {
		decodeBlock(dst[b*blockCols:(b+1)*blockCols], packedRow[b*blockBytes:(b+1)*blockBytes])
	}
	for c := full * blockCols; c < len(dst); c++ {
		dst[c] = t.weight(r, c)
	}
}

// decodeBlock writes the 256 weights of one packed block to out.
func decodeBlock(out []int8, src []uint8) {
	out, src = out[:blockCols], src[:blockBytes]
	for j, b := range src {
		out[j] = int8(b&3) - 1
		out[laneCols+j] = int8(b>>2&3) - 1
		out[2*laneCols+j] = int8(b>>4&3) - 1
		out[3*laneCols+j] = int8(b>>6) - 1
	}
}

func (t *Ternary) setWeight(r, c int, w int8) {
	i, shift := t.codeAt(r, c)
	t.packed[i] = t.packed[i]&^(3<<shift) | uint8(w+1)<<shift
}

// PackTernary packs w [rows, cols], row-major, whose values must be -1, 0 or
// 1. It fails, naming the first bad index, on any other value, and when
// len(w) != rows*cols. Rows are packed in parallel; the result does not
// depend on the thread count.
func PackTernary(w []int8, rows, cols int) (*Ternary, error) {
	if rows < 0 || cols < 0 {
		return nil, fmt.Errorf("kernels: PackTernary: negative shape [%d, %d]", rows, cols)
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("kernels: PackTernary: len(w) = %d, want rows*cols = %d*%d = %d", len(w), rows, cols, rows*cols)
	}
	t := allocTernary(rows, cols)
	workers := min(runtime.GOMAXPROCS(0), max(rows/64, 1))
	bad := make([]int, workers) // first bad flat index per worker, or -1
	var wg sync.WaitGroup
	for worker := range workers {
		lo, hi := worker*rows/workers, (worker+1)*rows/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			bad[worker] = -1
			for r := lo; r < hi; r++ {
				if c := t.packRow(r, w[r*cols:(r+1)*cols]); c >= 0 {
					bad[worker] = r*cols + c
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, i := range bad {
		if i >= 0 {
			return nil, fmt.Errorf("kernels: PackTernary: w[%d] (row %d, col %d) = %d, want -1, 0 or 1", i, i/cols, i%cols, w[i])
		}
	}
	t.padRows()
	return t, nil
}

// packRow packs one row of weights into row r, every byte of it, a whole
// block of four 64-column planes at a time; the last partial block is
// packed from a copy padded with zeros. It returns the column of the first
// value outside {-1, 0, 1}, or -1.
func (t *Ternary) packRow(r int, row []int8) int {
	for c, v := range row {
		if uint8(v+1) > 2 {
			return c
		}
	}
	dst := t.packed[r*t.rowBytes() : (r+1)*t.rowBytes()]
	full := len(row) / blockCols
	for b := range full {
		packBlock(dst[b*blockBytes:(b+1)*blockBytes], row[b*blockCols:(b+1)*blockCols])
	}
	if full < t.blocks {
		var tail [blockCols]int8
		copy(tail[:], row[full*blockCols:])
		packBlock(dst[full*blockBytes:], tail[:])
	}
	return -1
}

// packBlock packs the 256 weights of src into the 64 bytes of a block.
func packBlock(out []uint8, src []int8) {
	out, src = out[:blockBytes], src[:blockCols]
	for j := range laneCols {
		out[j] = uint8(src[j]+1) | uint8(src[laneCols+j]+1)<<2 | uint8(src[2*laneCols+j]+1)<<4 | uint8(src[3*laneCols+j]+1)<<6
	}
}

// Unpack returns the weights [Rows, Cols], row-major, decoded on
// GOMAXPROCS threads.
func (t *Ternary) Unpack() []int8 {
	w := make([]int8, t.Rows*t.Cols)
	parallelRows(t.Rows, t.Rows*t.Cols, func(r0, r1 int) {
		t.UnpackRows(w[r0*t.Cols:r1*t.Cols], r0, r1)
	})
	return w
}

// UnpackRows writes rows [lo, hi) of the weights to dst [hi-lo, Cols],
// row-major, on the calling goroutine. It panics when the rows are out of
// range or dst is shorter than (hi-lo)·Cols.
func (t *Ternary) UnpackRows(dst []int8, lo, hi int) {
	if lo < 0 || hi > t.Rows || lo > hi {
		panic(fmt.Sprintf("kernels: UnpackRows: rows [%d, %d) outside [0, %d)", lo, hi, t.Rows))
	}
	for r := lo; r < hi; r++ {
		t.decodeRow(r, dst[(r-lo)*t.Cols:(r-lo+1)*t.Cols])
	}
}

// FromHFPacked reads the offline layout of microsoft/bitnet-b1.58-2B-4T: uint8
// [rows/4, cols], where unpacked row r lives in packed row r mod (rows/4) at
// bits 2*(r div (rows/4)), stored as w+1. rows must be a multiple of 4 and
// len(packed) must be rows/4*cols; the code 3 is an error.
func FromHFPacked(packed []uint8, rows, cols int) (*Ternary, error) {
	if rows < 0 || cols < 0 || rows%4 != 0 {
		return nil, fmt.Errorf("kernels: FromHFPacked: shape [%d, %d], want non-negative with rows a multiple of 4", rows, cols)
	}
	quarter := rows / 4
	if len(packed) != quarter*cols {
		return nil, fmt.Errorf("kernels: FromHFPacked: len(packed) = %d, want rows/4*cols = %d*%d = %d", len(packed), quarter, cols, quarter*cols)
	}
	t := newTernary(rows, cols)
	for r := 0; r < rows; r++ {
		shift := uint(2 * (r / quarter))
		src := packed[(r%quarter)*cols : (r%quarter+1)*cols]
		for c, b := range src {
			code := b >> shift & 3
			if code == 3 {
				return nil, fmt.Errorf("kernels: FromHFPacked: packed[%d] (packed row %d, col %d) bits %d..%d = 3 for weight row %d, want 0, 1 or 2",
					(r%quarter)*cols+c, r%quarter, c, shift, shift+1, r)
			}
			t.setWeight(r, c, int8(code)-1)
		}
	}
	return t, nil
}

// HFPacked returns the weights in the offline HF layout read by FromHFPacked.
// It panics when Rows is not a multiple of 4.
func (t *Ternary) HFPacked() []uint8 {
	if t.Rows%4 != 0 {
		panic(fmt.Errorf("kernels: HFPacked: Rows = %d, want a multiple of 4", t.Rows))
	}
	quarter := t.Rows / 4
	packed := make([]uint8, quarter*t.Cols)
	for r := 0; r < t.Rows; r++ {
		shift := uint(2 * (r / quarter))
		for c := 0; c < t.Cols; c++ {
			packed[(r%quarter)*t.Cols+c] |= uint8(t.weight(r, c)+1) << shift
		}
	}
	return packed
}
