//go:build amd64 && !noasm

package sgemm

// Assembly micro-kernels (kernel_amd64.s). They compute one tile exactly as
// described by [kernel]: each element is a sequential chain of fused
// multiply-adds over p = 0..kc-1, starting from c (load) or zero.

//go:noescape
func kern12x32(kc int, a, b, c *float32, ldc int, load bool)

//go:noescape
func kern6x16(kc int, a, b, c *float32, ldc int, load bool)

var (
	avx512Kernel = kernel{name: "avx512", mr: 12, nr: 32, fn: kern12x32Go}
	avx2Kernel   = kernel{name: "avx2", mr: 6, nr: 16, fn: kern6x16Go}
)

func kern12x32Go(kc int, a, b, c []float32, ldc int, load bool) {
	if kc < 1 || len(a) < kc*12 || len(b) < kc*32 || ldc < 32 || len(c) < 11*ldc+32 {
		panic("sgemm: kern12x32 operand too short")
	}
	kern12x32(kc, &a[0], &b[0], &c[0], ldc, load)
}

func kern6x16Go(kc int, a, b, c []float32, ldc int, load bool) {
	if kc < 1 || len(a) < kc*6 || len(b) < kc*16 || ldc < 16 || len(c) < 5*ldc+16 {
		panic("sgemm: kern6x16 operand too short")
	}
	kern6x16(kc, &a[0], &b[0], &c[0], ldc, load)
}
