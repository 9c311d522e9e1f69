//go:build !noasm

#include "textflag.h"

// func fillAliasAVX512(dst *uint16, groups int, packed, entry *uint64, state *[8]uint64)
// One group of 8 weights per iteration, lane l in qword lane l: the
// SplitMix64 finaliser (two VPMULLQ); the slot from the top 13 bits; the
// slots' packed words, loaded one by one through the stack (8 scalar loads
// and inserts beat VPGATHERQQ, which is microcoded on Zen 4, 0.73 against
// 0.91 ns a weight); the threshold compare on their top 34 bits, as a mask
// that keeps the own magnitude; the sign from bit 50; VPMOVQW to store 8
// words. A group where some lane's draw ties those 34 bits (one draw in
// 2^34) redoes the compare exactly from a gather of the entries. Needs
// groups >= 1.
TEXT ·fillAliasAVX512(SB), NOSPLIT, $64-40
	MOVQ dst+0(FP), DI
	MOVQ groups+8(FP), CX
	MOVQ packed+16(FP), SI
	MOVQ entry+24(FP), R8
	MOVQ state+32(FP), DX
	VMOVDQU64 (DX), Z0               // the lanes' states
	MOVQ $0xf1bbcdcbfa53e0a8, AX     // 8γ mod 2^64
	VPBROADCASTQ AX, Z1
	MOVQ $0xbf58476d1ce4e5b9, AX
	VPBROADCASTQ AX, Z2
	MOVQ $0x94d049bb133111eb, AX
	VPBROADCASTQ AX, Z3
	MOVQ $0x7fff, AX
	VPBROADCASTQ AX, Z5
	MOVQ $0x40000000, AX             // 2^30
	VPBROADCASTQ AX, Z16
	MOVQ $0x3ffffffffffff, AX        // 2^50 - 1
	VPBROADCASTQ AX, Z17

loop:
	VPSRLQ  $30, Z0, Z6
	VPXORQ  Z0, Z6, Z6
	VPMULLQ Z2, Z6, Z6
	VPSRLQ  $27, Z6, Z7
	VPXORQ  Z6, Z7, Z7
	VPMULLQ Z3, Z7, Z7
	VPSRLQ  $31, Z7, Z8
	VPXORQ  Z7, Z8, Z8               // z
	VPADDQ  Z1, Z0, Z0               // the next group's states
	VPSRLQ  $51, Z8, Z9              // slots
	VMOVDQU64 Z9, 0(SP)
	MOVQ    0(SP), AX
	MOVQ    8(SP), BX
	MOVQ    16(SP), R9
	MOVQ    24(SP), R10
	MOVQ    32(SP), R11
	MOVQ    40(SP), R12
	MOVQ    48(SP), R13
	MOVQ    56(SP), DX
	VMOVQ   (SI)(AX*8), X10
	VPINSRQ $1, (SI)(BX*8), X10, X10
	VMOVQ   (SI)(R9*8), X11
	VPINSRQ $1, (SI)(R10*8), X11, X11
	VMOVQ   (SI)(R11*8), X12
	VPINSRQ $1, (SI)(R12*8), X12, X12
	VMOVQ   (SI)(R13*8), X13
	VPINSRQ $1, (SI)(DX*8), X13, X13
	VINSERTI128 $1, X11, Y10, Y10
	VINSERTI128 $1, X13, Y12, Y12
	VINSERTI64X4 $1, Y12, Z10, Z10   // packed words
	// The top 34 bits of z<<14 are the draw's compare bits 49..16: below
	// the packed word's top 34 bits, the draw keeps the own magnitude,
	// above them it takes the alias, equal to them it ties.
	VPSLLQ  $14, Z8, Z12
	VPCMPUQ $1, Z10, Z12, K3         // K3: keep the own magnitude
	VPXORQ  Z12, Z10, Z14
	VPCMPUQ $1, Z16, Z14, K4         // K4: the top 34 bits tie
	KORTESTW K4, K4
	JNZ     exact

merge:
	VPSRLQ  $15, Z10, Z14            // the alias's magnitude in the low 15 bits
	VMOVDQA64 Z10, K3, Z14           // the own one where kept
	VPSRLQ  $35, Z8, Z15             // bit 50 to bit 15
	VPTERNLOGQ $0xe4, Z5, Z15, Z14   // low 15 bits from Z14, bit 15 from Z15
	VPMOVQW Z14, (DI)
	ADDQ    $16, DI
	DECQ    CX
	JNZ     loop
	VZEROUPPER
	RET

exact:
	KXNORW  K1, K1, K1
	VPXORQ  Z18, Z18, Z18
	VPGATHERQQ (R8)(Z9*8), K1, Z18   // entries
	VPSRLQ  $13, Z18, Z18            // thresholds
	VPANDQ  Z17, Z8, Z19             // low 50 bits
	VPCMPUQ $1, Z18, Z19, K3
	JMP     merge
