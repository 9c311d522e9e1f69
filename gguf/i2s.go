package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Layout is a way to pack 2-bit ternary codes (0 = -1, 1 = 0, 2 = +1) of a
// [rows, cols] matrix, flattened row-major (ggml order, ne[0] = cols
// fastest). Only LayoutX86 is what bitnet.cpp's official files and its x86
// kernels use; the others exist in code and are recognised so that a file
// packed in one is named (docs/gguf.md, "I2_S layouts").
type Layout int

const (
	// LayoutX86 is ACT_PARALLEL x86, the format of record: 128-element
	// blocks of 32 bytes; byte j of block b holds elements 128b+j, +32,
	// +64, +96 at bits 7:6, 5:4, 3:2, 1:0 (BitNet src/ggml-bitnet-mad.cpp
	// quantize_i2_s).
	LayoutX86 Layout = iota
	// LayoutARM is the HEAD NEON layout: 64-element blocks of 16 bytes;
	// byte j of block i holds 64i+j, +16, +32, +48 at bits 7:6 … 1:0.
	LayoutARM
	// LayoutRowInterleaved is x86 without ACT_PARALLEL: in each group of 4
	// rows, byte rg·cols+col holds rows 4rg..4rg+3 of that column at bits
	// 7:6 … 1:0.
	LayoutRowInterleaved
	// LayoutSequential is the third-party 4-per-byte layout: element 4i+k
	// at bits 7-2k:6-2k of byte i.
	LayoutSequential
	// LayoutSequentialLSB is the same with element 4i+k at bits 2k+1:2k.
	LayoutSequentialLSB
)

// Layouts lists every layout, the one of record first.
var Layouts = []Layout{LayoutX86, LayoutARM, LayoutRowInterleaved, LayoutSequential, LayoutSequentialLSB}

func (l Layout) String() string {
	switch l {
	case LayoutX86:
		return "x86 ACT_PARALLEL 128/32"
	case LayoutARM:
		return "ARM NEON 64/16"
	case LayoutRowInterleaved:
		return "non-ACT_PARALLEL 4-row interleaved"
	case LayoutSequential:
		return "sequential 4-per-byte (MSB first)"
	case LayoutSequentialLSB:
		return "sequential 4-per-byte (LSB first)"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// position returns the byte and bit shift of element e (row r, col c).
func (l Layout) position(e, r, c, cols int) (int, uint) {
	switch l {
	case LayoutX86:
		b, p := e/128, e%128
		return 32*b + p%32, uint(6 - 2*(p/32))
	case LayoutARM:
		b, p := e/64, e%64
		return 16*b + p%16, uint(6 - 2*(p/16))
	case LayoutRowInterleaved:
		return (r/4)*cols + c, uint(6 - 2*(r%4))
	case LayoutSequential:
		return e / 4, uint(6 - 2*(e%4))
	default:
		return e / 4, uint(2 * (e % 4))
	}
}

// PackedOK reports whether the layout can hold a [rows, cols] matrix in
// rows·cols/4 bytes, and why not.
func (l Layout) PackedOK(rows, cols int) error {
	n := rows * cols
	switch {
	case l == LayoutX86 && n%128 != 0:
		return fmt.Errorf("%s: %d elements are not whole 128-element blocks", l, n)
	case l == LayoutARM && n%64 != 0:
		return fmt.Errorf("%s: %d elements are not whole 64-element blocks", l, n)
	case l == LayoutRowInterleaved && rows%4 != 0:
		return fmt.Errorf("%s: %d rows are not whole 4-row groups", l, rows)
	case n%4 != 0:
		return fmt.Errorf("%s: %d elements are not whole bytes of 4", l, n)
	}
	return nil
}

// PackI2S packs ternary values w [rows, cols] (-1, 0, 1) in layout l with
// the scale in the 32-byte tail: rows·cols/4 + 32 bytes.
func PackI2S(l Layout, w []int8, rows, cols int, scale float32) ([]byte, error) {
	if len(w) != rows*cols {
		return nil, fmt.Errorf("PackI2S: %d values for shape [%d, %d]", len(w), rows, cols)
	}
	if err := l.PackedOK(rows, cols); err != nil {
		return nil, err
	}
	n := rows * cols
	out := make([]byte, n/4+TailBytes)
	for e, v := range w {
		if v < -1 || v > 1 {
			return nil, fmt.Errorf("PackI2S: element %d (row %d, col %d) = %d, expected -1, 0 or 1", e, e/cols, e%cols, v)
		}
		i, shift := l.position(e, e/cols, e%cols, cols)
		out[i] |= byte(v+1) << shift
	}
	binary.LittleEndian.PutUint32(out[n/4:], math.Float32bits(scale))
	return out, nil
}

// I2SScale is the float32 scale in the tail of an I2_S tensor of n elements.
func I2SScale(data []byte, n int) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(data[n/4:]))
}

// UnpackI2S decodes the raw 2-bit codes (0, 1, 2 or 3) of a [rows, cols]
// I2_S tensor packed in layout l into codes.
func UnpackI2S(l Layout, data []byte, rows, cols int, codes []byte) error {
	n := rows * cols
	if len(codes) != n || len(data) < n/4 {
		return fmt.Errorf("UnpackI2S: %d data bytes and %d codes for shape [%d, %d]", len(data), len(codes), rows, cols)
	}
	if err := l.PackedOK(rows, cols); err != nil {
		return err
	}
	switch l {
	case LayoutX86:
		for b := 0; b < n/128; b++ {
			block, dst := data[32*b:32*b+32], codes[128*b:128*b+128]
			for j, v := range block {
				dst[j], dst[32+j], dst[64+j], dst[96+j] = v>>6, v>>4&3, v>>2&3, v&3
			}
		}
	case LayoutSequential:
		for i, v := range data[:n/4] {
			codes[4*i], codes[4*i+1], codes[4*i+2], codes[4*i+3] = v>>6, v>>4&3, v>>2&3, v&3
		}
	default:
		for e := range codes {
			i, shift := l.position(e, e/cols, e%cols, cols)
			codes[e] = data[i] >> shift & 3
		}
	}
	return nil
}
