//go:build !noasm

#include "textflag.h"

// PLANE adds plane k of a block (64 consecutive bf16 patterns at off(SI))
// to the codes in Z0: for each pattern i, byte i of Z0 gains unit (4^k)
// when the pattern becomes +1 and loses it when it becomes -1. The range
// checks b-plus < n and b-minus < n are unsigned word compares, 32 lanes
// at a time; KUNPCKDQ joins the two halves into one 64-bit mask.
#define PLANE(off, unit) \
	VMOVDQU16 off(SI), Z1;          \
	VMOVDQU16 off+64(SI), Z2;       \
	VPSUBW    Z28, Z1, Z3;          \
	VPCMPUW   $1, Z30, Z3, K1;      \
	VPSUBW    Z28, Z2, Z4;          \
	VPCMPUW   $1, Z30, Z4, K2;      \
	VPSUBW    Z29, Z1, Z5;          \
	VPCMPUW   $1, Z30, Z5, K3;      \
	VPSUBW    Z29, Z2, Z6;          \
	VPCMPUW   $1, Z30, Z6, K4;      \
	KUNPCKDQ  K1, K2, K1;           \
	KUNPCKDQ  K3, K4, K3;           \
	VPADDB    unit, Z0, K1, Z0;     \
	VPSUBB    unit, Z0, K3, Z0

// func packBF16AVX512(dst *uint8, src *uint16, blocks int, plus, minus, n uint16)
TEXT ·packBF16AVX512(SB), NOSPLIT, $0-30
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    blocks+16(FP), CX
	MOVWLZX plus+24(FP), AX
	VPBROADCASTW AX, Z28
	MOVWLZX minus+26(FP), AX
	VPBROADCASTW AX, Z29
	MOVWLZX n+28(FP), AX
	VPBROADCASTW AX, Z30
	MOVL    $0x55555555, AX
	VPBROADCASTD AX, Z31         // four weights of 0 per byte
	MOVL    $0x01010101, AX
	VPBROADCASTD AX, Z24         // 4^k in every byte, plane k
	VPSLLD  $2, Z24, Z25
	VPSLLD  $4, Z24, Z26
	VPSLLD  $6, Z24, Z27

block:
	VMOVDQA64 Z31, Z0
	PLANE(0, Z24)
	PLANE(128, Z25)
	PLANE(256, Z26)
	PLANE(384, Z27)
	VMOVDQU64 Z0, (DI)
	ADDQ    $512, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     block
	VZEROUPPER
	RET
