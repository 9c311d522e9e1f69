package tensorfile

import (
	"encoding/binary"
	"math"
)

// Float32Bytes encodes values as little-endian F32 tensor data.
func Float32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

// BF16Bytes encodes values as little-endian BF16 tensor data, rounding each
// to the nearest bfloat16 with ties to even (as torch's .to(bfloat16) does).
func BF16Bytes(v []float32) []byte {
	out := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(x))
	}
	return out
}

// Int64Bytes encodes values as little-endian I64 tensor data.
func Int64Bytes(v []int64) []byte {
	out := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(out[8*i:], uint64(x))
	}
	return out
}

// BF16ToFloat32 widens a bfloat16 bit pattern; the conversion is exact.
func BF16ToFloat32(u uint16) float32 {
	return math.Float32frombits(uint32(u) << 16)
}

// Float32ToBF16 rounds a float32 to the nearest bfloat16 bit pattern, ties to
// even. NaN stays NaN (quieted, sign kept); overflow rounds to ±Inf.
func Float32ToBF16(f float32) uint16 {
	bits := math.Float32bits(f)
	if f != f {
		return uint16(bits>>16) | 0x0040
	}
	// Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even.
	bits += 0x7FFF + (bits>>16)&1
	return uint16(bits >> 16)
}

// F16ToFloat32 widens an IEEE 754 half-precision bit pattern; the conversion
// is exact.
func F16ToFloat32(u uint16) float32 {
	sign := uint32(u>>15) << 31
	exponent := uint32(u>>10) & 0x1F
	mantissa := uint32(u) & 0x3FF
	switch {
	case exponent == 0x1F: // Inf or NaN
		return math.Float32frombits(sign | 0x7F800000 | mantissa<<13)
	case exponent != 0: // normal: rebias 15 → 127
		return math.Float32frombits(sign | (exponent+112)<<23 | mantissa<<13)
	case mantissa == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: mantissa × 2^-24, exact in float32.
	value := float32(mantissa) * (1.0 / (1 << 24))
	if sign != 0 {
		value = -value
	}
	return value
}
