//go:build !noasm

#include "textflag.h"

// A row's 256-column block is two 32-byte halves. Each 2-bit plane of a half
// is masked (Y15 = 0x03 bytes) to codes u ∈ {0,1,2} and VPMADDUBSW forms u·x
// pair sums in int16 lanes; |pair| <= 2·2·128 = 512, so the eight pair sums of
// a block (|sum| <= 4096) never saturate or wrap. The block then widens to
// int32 with VPMADDWD by ones (Y14).

// HALF_FIRST starts acc16 with plane 0 of the half at wsrc; HALF_NEXT adds it.
#define HALF_FIRST(wsrc, x0, acc16) \
	VMOVDQU    wsrc, Y8;          \
	VPAND      Y15, Y8, Y9;       \
	VPMADDUBSW x0, Y9, acc16

#define HALF_NEXT(wsrc, x0, acc16) \
	VMOVDQU    wsrc, Y8;          \
	VPAND      Y15, Y8, Y9;       \
	VPMADDUBSW x0, Y9, Y12;       \
	VPADDW     Y12, acc16, acc16

// HALF_PLANES adds planes 1..3 of the half loaded in Y8.
#define HALF_PLANES(x1, x2, x3, acc16) \
	VPSRLW     $2, Y8, Y10;       \
	VPAND      Y15, Y10, Y10;     \
	VPMADDUBSW x1, Y10, Y11;      \
	VPADDW     Y11, acc16, acc16; \
	VPSRLW     $4, Y8, Y9;        \
	VPAND      Y15, Y9, Y9;       \
	VPMADDUBSW x2, Y9, Y12;       \
	VPADDW     Y12, acc16, acc16; \
	VPSRLW     $6, Y8, Y10;       \
	VPAND      Y15, Y10, Y10;     \
	VPMADDUBSW x3, Y10, Y11;      \
	VPADDW     Y11, acc16, acc16

// AVX2_ROW adds one block of a row (halves at w0, w1) to acc32 via acc16.
#define AVX2_ROW(w0, w1, acc16, acc32) \
	HALF_FIRST(w0, (R12), acc16);                        \
	HALF_PLANES(64(R12), 128(R12), 192(R12), acc16);     \
	HALF_NEXT(w1, 32(R12), acc16);                       \
	HALF_PLANES(96(R12), 160(R12), 224(R12), acc16);     \
	VPMADDWD Y14, acc16, acc16;                          \
	VPADDD   acc16, acc32, acc32

// func gemvAVX2(dst *int32, w *uint8, x *int8, rowGroups, blocks int, sumX int32)
// Four rows at a time; x is read as a memory operand, as the sixteen Y
// registers hold the accumulators. Needs rowGroups >= 1, blocks >= 1.
TEXT ·gemvAVX2(SB), NOSPLIT, $0-44
	MOVQ    dst+0(FP), DI
	MOVQ    w+8(FP), R10
	MOVQ    x+16(FP), DX
	MOVQ    rowGroups+24(FP), CX
	MOVQ    blocks+32(FP), BX
	MOVLQSX sumX+40(FP), R8
	MOVQ    BX, R9
	SHLQ    $6, R9               // R9 = bytes per packed row
	MOVL    $0x03030303, AX
	MOVQ    AX, X15
	VPBROADCASTD X15, Y15
	MOVL    $0x00010001, AX
	MOVQ    AX, X14
	VPBROADCASTD X14, Y14

group:
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	LEAQ  (R10)(R9*2), R11
	ADDQ  R9, R11                // R11 = row 3
	MOVQ  DX, R12
	MOVQ  BX, R13

block:
	AVX2_ROW((R10), 32(R10), Y4, Y0)
	AVX2_ROW((R10)(R9*1), 32(R10)(R9*1), Y5, Y1)
	AVX2_ROW((R10)(R9*2), 32(R10)(R9*2), Y6, Y2)
	AVX2_ROW((R11), 32(R11), Y7, Y3)
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $256, R12
	DECQ R13
	JNZ  block

	// R10 now points at row 1 of the group; the next group starts 3 rows on.
	LEAQ (R10)(R9*2), R10
	ADDQ R9, R10

	// X0 = [row0, row1, row2, row3] - sumX.
	VPHADDD Y1, Y0, Y0
	VPHADDD Y3, Y2, Y2
	VPHADDD Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X8
	VPADDD  X8, X0, X0
	MOVQ    R8, X9
	VPBROADCASTD X9, X9
	VPSUBD  X9, X0, X0
	VMOVDQU X0, (DI)
	ADDQ    $16, DI
	DECQ    CX
	JNZ     group

	VZEROUPPER
	RET
