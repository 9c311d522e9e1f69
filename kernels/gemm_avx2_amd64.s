//go:build !noasm

#include "textflag.h"

// UNPACK_HALF splits the 32 packed bytes at src into code planes Y0..Y3
// (u ∈ {0,1,2} per byte) with the 0x03 mask in Y15.
#define UNPACK_HALF(src) \
	VMOVDQU src, Y4;      \
	VPAND   Y15, Y4, Y0;  \
	VPSRLW  $2, Y4, Y1;   \
	VPAND   Y15, Y1, Y1;  \
	VPSRLW  $4, Y4, Y2;   \
	VPAND   Y15, Y2, Y2;  \
	VPSRLW  $6, Y4, Y3;   \
	VPAND   Y15, Y3, Y3

// TOKEN_FIRST starts the int16 accumulator acc16 of one token with the four
// planes of the lower half; TOKEN_NEXT adds the upper half. Pair sums are at
// most 2·2·128 = 512 in magnitude, eight of them at most 4096: no wrap.
#define TOKEN_FIRST(x0, x1, x2, x3, acc16) \
	VPMADDUBSW x0, Y0, acc16;     \
	TOKEN_PLANES(x1, x2, x3, acc16)

#define TOKEN_NEXT(x0, x1, x2, x3, acc16) \
	VPMADDUBSW x0, Y0, Y13;       \
	VPADDW     Y13, acc16, acc16; \
	TOKEN_PLANES(x1, x2, x3, acc16)

// TOKEN_PLANES adds planes 1..3 (codes in Y1..Y3) of one token to acc16.
#define TOKEN_PLANES(x1, x2, x3, acc16) \
	VPMADDUBSW x1, Y1, Y13;       \
	VPADDW     Y13, acc16, acc16; \
	VPMADDUBSW x2, Y2, Y13;       \
	VPADDW     Y13, acc16, acc16; \
	VPMADDUBSW x3, Y3, Y13;       \
	VPADDW     Y13, acc16, acc16

// WIDEN adds the int16 lanes of acc16 to acc32 in pairs (Y14 = int16 ones).
#define WIDEN(acc16, acc32) \
	VPMADDWD Y14, acc16, acc16; \
	VPADDD   acc16, acc32, acc32

// func gemmAVX2(dst *int32, dstStride int, w *uint8, x *int8, sums *int32, rowGroups, blocks int)
// Micro-tile of 1 row × 4 tokens: each half block is unpacked once and
// serves four tokens, whose x is read as memory operands. Y5..Y8 are the
// int16 and Y9..Y12 the int32 accumulators of tokens 0..3. Needs
// rowGroups >= 1, blocks >= 1.
TEXT ·gemmAVX2(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ dstStride+8(FP), R8
	SHLQ $2, R8                  // R8 = dst stride in bytes
	MOVQ w+16(FP), R11
	MOVQ x+24(FP), DX
	MOVQ sums+32(FP), SI
	MOVQ rowGroups+40(FP), CX
	SHLQ $2, CX                  // CX = rows
	MOVQ blocks+48(FP), BX
	MOVQ BX, R10
	SHLQ $8, R10                 // R10 = bytes per token of x
	MOVL $0x03030303, AX
	MOVQ AX, X15
	VPBROADCASTD X15, Y15
	MOVL $0x00010001, AX
	MOVQ AX, X14
	VPBROADCASTD X14, Y14

row:
	VPXOR Y9, Y9, Y9
	VPXOR Y10, Y10, Y10
	VPXOR Y11, Y11, Y11
	VPXOR Y12, Y12, Y12
	MOVQ  DX, R12                // token 0; tokens 1, 2 by index; token 3 in R13
	LEAQ  (DX)(R10*2), R13
	ADDQ  R10, R13
	MOVQ  BX, AX

block:
	UNPACK_HALF((R11))
	TOKEN_FIRST((R12), 64(R12), 128(R12), 192(R12), Y5)
	TOKEN_FIRST((R12)(R10*1), 64(R12)(R10*1), 128(R12)(R10*1), 192(R12)(R10*1), Y6)
	TOKEN_FIRST((R12)(R10*2), 64(R12)(R10*2), 128(R12)(R10*2), 192(R12)(R10*2), Y7)
	TOKEN_FIRST((R13), 64(R13), 128(R13), 192(R13), Y8)
	UNPACK_HALF(32(R11))
	TOKEN_NEXT(32(R12), 96(R12), 160(R12), 224(R12), Y5)
	TOKEN_NEXT(32(R12)(R10*1), 96(R12)(R10*1), 160(R12)(R10*1), 224(R12)(R10*1), Y6)
	TOKEN_NEXT(32(R12)(R10*2), 96(R12)(R10*2), 160(R12)(R10*2), 224(R12)(R10*2), Y7)
	TOKEN_NEXT(32(R13), 96(R13), 160(R13), 224(R13), Y8)
	WIDEN(Y5, Y9)
	WIDEN(Y6, Y10)
	WIDEN(Y7, Y11)
	WIDEN(Y8, Y12)
	ADDQ $64, R11
	ADDQ $256, R12
	ADDQ $256, R13
	DECQ AX
	JNZ  block

	// X9 = [t0, t1, t2, t3] - sums, scattered down the token stride of dst.
	VPHADDD Y10, Y9, Y9
	VPHADDD Y12, Y11, Y11
	VPHADDD Y11, Y9, Y9
	VEXTRACTI128 $1, Y9, X13
	VPADDD  X13, X9, X9
	VPSUBD  (SI), X9, X9
	LEAQ    (DI)(R8*2), AX
	VPEXTRD $0, X9, (DI)
	VPEXTRD $1, X9, (DI)(R8*1)
	VPEXTRD $2, X9, (AX)
	VPEXTRD $3, X9, (AX)(R8*1)
	ADDQ    $4, DI
	DECQ    CX
	JNZ     row

	VZEROUPPER
	RET
