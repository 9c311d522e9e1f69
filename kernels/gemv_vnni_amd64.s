//go:build !noasm

#include "textflag.h"

// The four 2-bit planes of a packed byte are isolated by masking alone, with
// no shift: plane k of byte b is b & (3<<2k) = u·4^k, u = w+1 ∈ {0,1,2}, a
// value ≤ 128 that VPDPBUSD takes as unsigned. Each plane has its own
// accumulator, exact in int32 (|lane| ≤ 64·2·128·K/64 = 256·K), and the row
// sum is acc0 + acc1>>2 + acc2>>4 + acc3>>6 (the shifts are exact).

// VNNI_ROW adds one 256-column block of one row to its plane accumulators
// a0..a3. x planes are in Z16..Z19, the masks 0x03, 0x0c, 0x30, 0xc0 in
// Z28..Z31.
#define VNNI_ROW(src, a0, a1, a2, a3) \
	VMOVDQU64 src, Z20;         \
	VPANDD    Z28, Z20, Z21;    \
	VPDPBUSD  Z16, Z21, a0;     \
	VPANDD    Z29, Z20, Z22;    \
	VPDPBUSD  Z17, Z22, a1;     \
	VPANDD    Z30, Z20, Z23;    \
	VPDPBUSD  Z18, Z23, a2;     \
	VPANDD    Z31, Z20, Z24;    \
	VPDPBUSD  Z19, Z24, a3

// COMBINE folds the plane accumulators of a row into a0.
#define COMBINE(a0, a1, a2, a3) \
	VPSRAD $2, a1, a1;          \
	VPSRAD $4, a2, a2;          \
	VPSRAD $6, a3, a3;          \
	VPADDD a1, a0, a0;          \
	VPADDD a3, a2, a2;          \
	VPADDD a2, a0, a0

// func gemvVNNI(dst *int32, w *uint8, x *int8, rowGroups, blocks int, sumX int32)
// Four rows at a time share the x loads: sixteen independent VPDPBUSD
// chains, Z(4i+k) for row i and plane k. Needs rowGroups >= 1, blocks >= 1.
TEXT ·gemvVNNI(SB), NOSPLIT, $0-44
	MOVQ    dst+0(FP), DI
	MOVQ    w+8(FP), R10
	MOVQ    x+16(FP), DX
	MOVQ    rowGroups+24(FP), CX
	MOVQ    blocks+32(FP), BX
	MOVLQSX sumX+40(FP), R8
	MOVQ    BX, R9
	SHLQ    $6, R9               // R9 = bytes per packed row
	MOVL    $0x03030303, AX
	VPBROADCASTD AX, Z28
	VPSLLD  $2, Z28, Z29
	VPSLLD  $4, Z28, Z30
	VPSLLD  $6, Z28, Z31

group:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	LEAQ   (R10)(R9*2), R11
	ADDQ   R9, R11               // R11 = row 3
	MOVQ   DX, R12
	MOVQ   BX, R13

block:
	VMOVDQU64 (R12), Z16
	VMOVDQU64 64(R12), Z17
	VMOVDQU64 128(R12), Z18
	VMOVDQU64 192(R12), Z19
	VNNI_ROW((R10), Z0, Z1, Z2, Z3)
	VNNI_ROW((R10)(R9*1), Z4, Z5, Z6, Z7)
	VNNI_ROW((R10)(R9*2), Z8, Z9, Z10, Z11)
	VNNI_ROW((R11), Z12, Z13, Z14, Z15)
	ADDQ $64, R10
	ADDQ $64, R11
	ADDQ $256, R12
	DECQ R13
	JNZ  block

	// R10 now points at row 1 of the group; the next group starts 3 rows on.
	LEAQ (R10)(R9*2), R10
	ADDQ R9, R10

	// Fold each row to one int32: X0 = [row0, row1, row2, row3] - sumX.
	COMBINE(Z0, Z1, Z2, Z3)
	COMBINE(Z4, Z5, Z6, Z7)
	COMBINE(Z8, Z9, Z10, Z11)
	COMBINE(Z12, Z13, Z14, Z15)
	VEXTRACTI64X4 $1, Z0, Y1
	VEXTRACTI64X4 $1, Z4, Y5
	VEXTRACTI64X4 $1, Z8, Y9
	VEXTRACTI64X4 $1, Z12, Y13
	VPADDD  Y1, Y0, Y0
	VPADDD  Y5, Y4, Y4
	VPADDD  Y9, Y8, Y8
	VPADDD  Y13, Y12, Y12
	VPHADDD Y4, Y0, Y0
	VPHADDD Y12, Y8, Y8
	VPHADDD Y8, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD  X1, X0, X0
	MOVQ    R8, X2
	VPBROADCASTD X2, X2
	VPSUBD  X2, X0, X0
	VMOVDQU X0, (DI)
	ADDQ    $16, DI
	DECQ    CX
	JNZ     group

	VZEROUPPER
	RET
