package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Raw reads a tensor's data bytes.
func (g *File) Raw(name string) ([]byte, error) {
	t, ok := g.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: not in the file", g.Path, name)
	}
	return g.RawRange(t, 0, t.Size)
}

// RawRange reads bytes [lo, hi) of tensor t's data.
func (g *File) RawRange(t TensorInfo, lo, hi int64) ([]byte, error) {
	if lo < 0 || hi < lo || hi > t.Size {
		return nil, fmt.Errorf("%s: tensor %q: byte range [%d, %d) outside its %d bytes", g.Path, t.Name, lo, hi, t.Size)
	}
	buf := make([]byte, hi-lo)
	if len(buf) == 0 {
		return buf, nil // a ReaderAt may answer io.EOF for nothing at the end of the file
	}
	if _, err := g.r.ReadAt(buf, t.Start+lo); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: reading %d bytes at %d: %v", g.Path, t.Name, len(buf), t.Start+lo, err)
	}
	return buf, nil
}

// Float32 reads an F32, F16 or BF16 tensor as float32 values.
func (g *File) Float32(name string) ([]float32, error) {
	t, ok := g.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: not in the file", g.Path, name)
	}
	return g.Float32Rows(t, 0, rowsOf(t))
}

// rowsOf is the number of ne[0]-element rows of t.
func rowsOf(t TensorInfo) int64 {
	if t.Ne[0] == 0 {
		return 0
	}
	return t.Elements() / int64(t.Ne[0])
}

// Float32Rows reads rows [lo, hi) (each ne[0] elements) of an F32, F16 or
// BF16 tensor.
func (g *File) Float32Rows(t TensorInfo, lo, hi int64) ([]float32, error) {
	var width int64
	switch t.Type {
	case TypeF32:
		width = 4
	case TypeF16, TypeBF16:
		width = 2
	default:
		return nil, fmt.Errorf("%s: tensor %q: type %s, expected F32, F16 or BF16", g.Path, t.Name, t.Type)
	}
	cols := int64(t.Ne[0])
	raw, err := g.RawRange(t, lo*cols*width, hi*cols*width)
	if err != nil {
		return nil, err
	}
	return DecodeFloats(t.Type, raw), nil
}

// DecodeFloats converts little-endian F32, F16 or BF16 bytes to float32.
func DecodeFloats(t Type, raw []byte) []float32 {
	switch t {
	case TypeF32:
		out := make([]float32, len(raw)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out
	case TypeF16:
		out := make([]float32, len(raw)/2)
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
		return out
	case TypeBF16:
		out := make([]float32, len(raw)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
		}
		return out
	}
	return nil
}

// EncodeFloats converts float32 values to little-endian F32, F16 or BF16
// bytes, rounding to nearest even.
func EncodeFloats(t Type, v []float32) []byte {
	switch t {
	case TypeF32:
		out := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
		return out
	case TypeF16:
		out := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToF16(x))
		}
		return out
	case TypeBF16:
		out := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(out[2*i:], float32ToBF16(x))
		}
		return out
	}
	return nil
}

// RoundTo rounds v to type t's precision (F16, BF16; F32 unchanged).
func RoundTo(t Type, v float32) float32 {
	switch t {
	case TypeF16:
		return F16ToFloat32(Float32ToF16(v))
	case TypeBF16:
		return math.Float32frombits(uint32(float32ToBF16(v)) << 16)
	}
	return v
}

func float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN stays a quiet NaN
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b >> 16 & 1)) >> 16)
}

// F16ToFloat32 converts an IEEE binary16 value.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h >> 10 & 0x1f)
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// subnormal: mant·2^-24
	v := float32(mant) / (1 << 24)
	if sign != 0 {
		v = -v
	}
	return v
}

// Float32ToF16 converts to IEEE binary16, rounding to nearest even;
// overflow gives ±Inf.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	switch {
	case abs > 0x7f800000:
		return sign | 0x7e00
	case abs >= 0x477ff000: // rounds to 65520 or more: Inf
		return sign | 0x7c00
	case abs >= 0x38800000: // normal in f16 (>= 2^-14)
		mant := abs & 0x7fffff
		exp := abs>>23 - 112
		h := uint32(exp)<<10 | mant>>13
		rest := mant & 0x1fff
		if rest > 0x1000 || rest == 0x1000 && h&1 == 1 {
			h++
		}
		return sign | uint16(h)
	}
	// subnormal or zero: value / 2^-24, rounded to nearest even
	v := float64(math.Float32frombits(abs)) * (1 << 24)
	return sign | uint16(math.RoundToEven(v))
}
