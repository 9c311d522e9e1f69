//go:build !noasm

#include "textflag.h"

// UNPACK4 splits 64 packed bytes in src into the four code planes p0..p3
// (u ∈ {0,1,2} per byte) using the 0x03 mask in Z31.
#define UNPACK4(src, p0, p1, p2, p3) \
	VPANDD Z31, src, p0;        \
	VPSRLW $2, src, p1;         \
	VPANDD Z31, p1, p1;         \
	VPSRLW $4, src, p2;         \
	VPANDD Z31, p2, p2;         \
	VPSRLW $6, src, p3;         \
	VPANDD Z31, p3, p3

// TOKEN adds one block of one token (planes at x0..x3) to the accumulators of
// row 0 (acc0, codes Z8..Z11) and row 1 (acc1, codes Z12..Z15).
#define TOKEN(x0, x1, x2, x3, acc0, acc1) \
	VMOVDQU64 x0, Z18;          \
	VPDPBUSD  Z18, Z8, acc0;    \
	VPDPBUSD  Z18, Z12, acc1;   \
	VMOVDQU64 x1, Z19;          \
	VPDPBUSD  Z19, Z9, acc0;    \
	VPDPBUSD  Z19, Z13, acc1;   \
	VMOVDQU64 x2, Z20;          \
	VPDPBUSD  Z20, Z10, acc0;   \
	VPDPBUSD  Z20, Z14, acc1;   \
	VMOVDQU64 x3, Z21;          \
	VPDPBUSD  Z21, Z11, acc0;   \
	VPDPBUSD  Z21, Z15, acc1

// FOLD4 reduces the 16 lanes of each of a, b, c, d (Z registers, given also
// as Y and X names) to Xa = [Σa, Σb, Σc, Σd], using Y8..Y12 as scratch.
#define FOLD4(za, ya, xa, zb, yb, zc, yc, zd, yd) \
	VEXTRACTI64X4 $1, za, Y8;   \
	VEXTRACTI64X4 $1, zb, Y9;   \
	VEXTRACTI64X4 $1, zc, Y10;  \
	VEXTRACTI64X4 $1, zd, Y11;  \
	VPADDD  Y8, ya, ya;         \
	VPADDD  Y9, yb, yb;         \
	VPADDD  Y10, yc, yc;        \
	VPADDD  Y11, yd, yd;        \
	VPHADDD yb, ya, ya;         \
	VPHADDD yd, yc, yc;         \
	VPHADDD yc, ya, ya;         \
	VEXTRACTI128 $1, ya, X12;   \
	VPADDD  X12, xa, xa

// func gemmVNNI(dst *int32, dstStride int, w *uint8, x *int8, sums *int32, rowGroups, blocks int)
// Micro-tile of 2 rows × 4 tokens: one unpack of the weights serves four
// tokens and one load of x serves two rows; eight accumulators, Z(2t+i) for
// token t and row i. Needs rowGroups >= 1, blocks >= 1.
TEXT ·gemmVNNI(SB), NOSPLIT, $0-56
	MOVQ dst+0(FP), DI
	MOVQ dstStride+8(FP), R8
	SHLQ $2, R8                  // R8 = dst stride in bytes
	MOVQ w+16(FP), R11
	MOVQ x+24(FP), DX
	MOVQ sums+32(FP), SI
	MOVQ rowGroups+40(FP), CX
	SHLQ $1, CX                  // CX = row pairs
	MOVQ blocks+48(FP), BX
	MOVQ BX, R9
	SHLQ $6, R9                  // R9 = bytes per packed row
	MOVQ BX, R10
	SHLQ $8, R10                 // R10 = bytes per token of x
	MOVL $0x03030303, AX
	VPBROADCASTD AX, Z31

pair:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	MOVQ DX, R12                 // token 0; tokens 1, 2 by index; token 3 in R13
	LEAQ (DX)(R10*2), R13
	ADDQ R10, R13
	MOVQ BX, AX

block:
	VMOVDQU64 (R11), Z16
	VMOVDQU64 (R11)(R9*1), Z17
	UNPACK4(Z16, Z8, Z9, Z10, Z11)
	UNPACK4(Z17, Z12, Z13, Z14, Z15)
	TOKEN((R12), 64(R12), 128(R12), 192(R12), Z0, Z1)
	TOKEN((R12)(R10*1), 64(R12)(R10*1), 128(R12)(R10*1), 192(R12)(R10*1), Z2, Z3)
	TOKEN((R12)(R10*2), 64(R12)(R10*2), 128(R12)(R10*2), 192(R12)(R10*2), Z4, Z5)
	TOKEN((R13), 64(R13), 128(R13), 192(R13), Z6, Z7)
	ADDQ $64, R11
	ADDQ $256, R12
	ADDQ $256, R13
	DECQ AX
	JNZ  block

	// R11 now points at row 1 of the pair; the next pair starts one row on.
	ADDQ R9, R11

	// X0 = [t0r0, t0r1, t1r0, t1r1], X4 = [t2r0, t2r1, t3r0, t3r1].
	FOLD4(Z0, Y0, X0, Z1, Y1, Z2, Y2, Z3, Y3)
	FOLD4(Z4, Y4, X4, Z5, Y5, Z6, Y6, Z7, Y7)
	MOVQ (SI), X13
	VPUNPCKLDQ X13, X13, X13     // [s0, s0, s1, s1]
	MOVQ 8(SI), X14
	VPUNPCKLDQ X14, X14, X14     // [s2, s2, s3, s3]
	VPSUBD X13, X0, X0
	VPSUBD X14, X4, X4
	LEAQ (DI)(R8*2), R12
	MOVQ X0, (DI)
	VPEXTRQ $1, X0, (DI)(R8*1)
	MOVQ X4, (R12)
	VPEXTRQ $1, X4, (R12)(R8*1)
	ADDQ $8, DI
	DECQ CX
	JNZ  pair

	VZEROUPPER
	RET
