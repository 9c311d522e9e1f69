// Package gguf reads and writes GGUF files (version 3, and version 2 on
// read; little-endian) with the tensor types of bitnet.cpp: F32, F16, BF16
// and BitNet's I2_S, TL1 and TL2. Every layout fact, with its source, is in
// docs/gguf.md. Sizes come from this package's own rules per type, never
// from generic block traits (ggml's traits give I2_S one byte per element,
// four times too many), and every other ggml type is refused by name.
package gguf

import "fmt"

// Type is a ggml tensor type id, as stored in a tensor info.
type Type uint32

// The tensor types this package sizes. I2_S, TL1 and TL2 are BitNet's
// (ggml/include/ggml.h of the BitNet llama.cpp fork: 36, 38, 39).
const (
	TypeF32  Type = 0
	TypeF16  Type = 1
	TypeBF16 Type = 30
	TypeI2S  Type = 36
	TypeTL1  Type = 38
	TypeTL2  Type = 39
)

// typeNames names every ggml type id of the fork, so that a refused type
// is named in its error.
var typeNames = map[Type]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
	10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
	16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
	22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
	29: "IQ1_M", 30: "BF16", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",
	34: "TQ1_0", 35: "TQ2_0", 36: "I2_S", 37: "I8_S", 38: "TL1", 39: "TL2",
}

func (t Type) String() string {
	if name, ok := typeNames[t]; ok {
		return name
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// Ternary reports whether t packs ternary weights (I2_S, TL1, TL2).
func (t Type) Ternary() bool { return t == TypeI2S || t == TypeTL1 || t == TypeTL2 }

// TailBytes is the block after the packed codes of an I2_S, TL1 or TL2
// tensor: the float32 scale in its first 4 bytes, the rest unused.
const TailBytes = 32

// ByteSize is the number of data bytes of a tensor of type t and shape ne
// (ne[0] the contiguous dimension), by the fork's ggml_nbytes:
//
//	F32 4n, F16 and BF16 2n;
//	I2_S and TL1: n/4 + 32 (2 bits a weight, then the 32-byte scale block);
//	TL2 (K = ne[0], M = the other dimensions): (K-256)·M/3·5/8 + 256·M/2·4/8
//	rounded up to 32, + 32.
//
// Any other type is an error naming it; so are sizes that overflow int64.
func ByteSize(t Type, ne []uint64) (int64, error) {
	n, err := Elements(ne)
	if err != nil {
		return 0, err
	}
	switch t {
	case TypeF32:
		return mulSize(n, 4)
	case TypeF16, TypeBF16:
		return mulSize(n, 2)
	case TypeI2S, TypeTL1:
		return n/4 + TailBytes, nil
	case TypeTL2:
		if len(ne) == 0 || ne[0] < 256 || (ne[0]-256)%3 != 0 {
			return 0, fmt.Errorf("TL2: expected ne[0] = 256 + a multiple of 3 (three-weight groups then a 256-column two-weight remainder), got ne %v", ne)
		}
		k := int64(ne[0])
		m := n / k
		three := (k - 256) * m / 3 * 5 / 8
		two := 256 * m / 2 * 4 / 8
		return (three+two+31)/32*32 + TailBytes, nil
	}
	return 0, fmt.Errorf("tensor type %s (%d) is not supported: expected F32, F16, BF16, I2_S, TL1 or TL2", t, uint32(t))
}

// maxElements bounds a tensor's element count, so that byte sizes fit int64.
const maxElements = 1 << 60

// Elements is the product of ne, an error when it exceeds 2^60.
func Elements(ne []uint64) (int64, error) {
	n := uint64(1)
	for i, d := range ne {
		if d > maxElements || (d != 0 && n > maxElements/d) {
			return 0, fmt.Errorf("ne[%d] = %d makes the element count exceed 2^60 (ne %v)", i, d, ne)
		}
		n *= d
	}
	return int64(n), nil
}

func mulSize(n, size int64) (int64, error) {
	if n > (1<<62)/size {
		return 0, fmt.Errorf("%d elements of %d bytes overflow", n, size)
	}
	return n * size, nil
}
