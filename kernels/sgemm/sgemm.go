// Package sgemm provides deterministic, multi-threaded float32 matrix
// products for dense row-major matrices.
//
// Three layouts are supported (all matrices dense, row-major, no strides):
//
//	NT: c[m×n] = a[m×k] · b[n×k]ᵀ
//	NN: c[m×n] = a[m×k] · b[k×n]
//	TN: c[m×n] = a[k×m]ᵀ · b[k×n]
//
// With accumulate=true the product is added to c instead of overwriting it.
// c must not overlap a or b. The functions are safe for concurrent use on
// distinct outputs; each call uses up to GOMAXPROCS goroutines.
//
// # Implementation
//
// Both operands are packed into cache-friendly panels (GotoBLAS style) and a
// register-blocked micro-kernel computes one mr×nr tile of c at a time. On
// amd64 the micro-kernel is hand-written assembly (AVX-512F, or AVX2+FMA);
// elsewhere, or with the noasm build tag, a pure-Go kernel is used. [Path]
// names the active implementation.
//
// # Determinism
//
// Work is split between goroutines only over blocks of output tiles; the k
// reduction is never split. Every output element, wherever its tile lies
// (tail tiles are zero-padded and go through the same micro-kernel), is
// computed as the strictly sequential chain
//
//	s = c0 (accumulate) or 0;  for p := 0; p < k; p++ { s = s + a[i,p]*b[p,j] }
//
// evaluated by the same instruction sequence (a fused multiply-add per step
// in the SIMD kernels). Results are therefore bit-identical for any
// GOMAXPROCS and across runs. The SIMD and pure-Go paths are each
// self-consistent but need not agree bitwise with each other.
package sgemm

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// NT computes c[m×n] = a[m×k] · b[n×k]ᵀ, or c += a·bᵀ when accumulate is
// true. All matrices are dense and row-major. Reference:
//
//	for i := 0; i < m; i++ {
//		for j := 0; j < n; j++ {
//			var s float32
//			if accumulate {
//				s = c[i*n+j]
//			}
//			for p := 0; p < k; p++ {
//				s += a[i*k+p] * b[j*k+p]
//			}
//			c[i*n+j] = s
//		}
//	}
//
// It panics if a slice is shorter than its matrix.
func NT(c, a, b []float32, m, n, k int, accumulate bool) {
	gemm("NT", c, a, b, m, n, k, accumulate, false, true)
}

// NN computes c[m×n] = a[m×k] · b[k×n], or c += a·b when accumulate is
// true. All matrices are dense and row-major. Reference:
//
//	for i := 0; i < m; i++ {
//		for j := 0; j < n; j++ {
//			var s float32
//			if accumulate {
//				s = c[i*n+j]
//			}
//			for p := 0; p < k; p++ {
//				s += a[i*k+p] * b[p*n+j]
//			}
//			c[i*n+j] = s
//		}
//	}
//
// It panics if a slice is shorter than its matrix.
func NN(c, a, b []float32, m, n, k int, accumulate bool) {
	gemm("NN", c, a, b, m, n, k, accumulate, false, false)
}

// TN computes c[m×n] = a[k×m]ᵀ · b[k×n], or c += aᵀ·b when accumulate is
// true. All matrices are dense and row-major. Reference:
//
//	for i := 0; i < m; i++ {
//		for j := 0; j < n; j++ {
//			var s float32
//			if accumulate {
//				s = c[i*n+j]
//			}
//			for p := 0; p < k; p++ {
//				s += a[p*m+i] * b[p*n+j]
//			}
//			c[i*n+j] = s
//		}
//	}
//
// It panics if a slice is shorter than its matrix.
func TN(c, a, b []float32, m, n, k int, accumulate bool) {
	gemm("TN", c, a, b, m, n, k, accumulate, true, false)
}

// NTRef is the plain triple-loop reference for [NT] (slow; for docs and tests).
func NTRef(c, a, b []float32, m, n, k int, accumulate bool) {
	check("NTRef", c, a, b, m, n, k)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			if accumulate {
				s = c[i*n+j]
			}
			for p := 0; p < k; p++ {
				s += a[i*k+p] * b[j*k+p]
			}
			c[i*n+j] = s
		}
	}
}

// NNRef is the plain triple-loop reference for [NN] (slow; for docs and tests).
func NNRef(c, a, b []float32, m, n, k int, accumulate bool) {
	check("NNRef", c, a, b, m, n, k)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			if accumulate {
				s = c[i*n+j]
			}
			for p := 0; p < k; p++ {
				s += a[i*k+p] * b[p*n+j]
			}
			c[i*n+j] = s
		}
	}
}

// TNRef is the plain triple-loop reference for [TN] (slow; for docs and tests).
func TNRef(c, a, b []float32, m, n, k int, accumulate bool) {
	check("TNRef", c, a, b, m, n, k)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			if accumulate {
				s = c[i*n+j]
			}
			for p := 0; p < k; p++ {
				s += a[p*m+i] * b[p*n+j]
			}
			c[i*n+j] = s
		}
	}
}

// Path names the active implementation: "avx512", "avx2" or "generic".
func Path() string { return active.name }

// kernel is a register-blocked micro-kernel computing one mr×nr tile of c:
//
//	for r < mr, q < nr:  s = load ? c[r*ldc+q] : 0
//	                     for p < kc: s += a[p*mr+r] * b[p*nr+q]
//	                     c[r*ldc+q] = s
//
// a and b are packed panels (kc·mr and kc·nr floats). kc ≥ 1.
type kernel struct {
	name   string
	mr, nr int
	fn     func(kc int, a, b, c []float32, ldc int, load bool)
}

// active is the kernel used by NT, NN and TN (selected at init; tests may
// swap it).
var active = bestKernel()

const (
	kcBlock = 256 // k-chunk length (packed panels hold kcBlock steps)
	ncBlock = 256 // columns per task slab (multiple of every nr)
	// Below this many multiply-adds the call runs on one goroutine.
	parallelMin = 1 << 20
)

// maxAPack bounds the floats of a packed at once (rows are processed in
// super-blocks); a variable so tests can exercise the super-block path.
var maxAPack = 4 << 20

func check(fn string, c, a, b []float32, m, n, k int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("sgemm.%s: negative size m=%d n=%d k=%d", fn, m, n, k))
	}
	if len(a) < m*k || len(b) < k*n || len(c) < m*n {
		panic(fmt.Sprintf("sgemm.%s: slice too short: len(c)=%d (need m*n=%d), len(a)=%d (need m*k=%d), len(b)=%d (need k*n=%d) for m=%d n=%d k=%d",
			fn, len(c), m*n, len(a), m*k, len(b), k*n, m, n, k))
	}
}

// problem describes one call: c[m×n] (+)= op(a) · op(b).
// aT: a is stored k×m (else m×k). bT: b is stored n×k (else k×n).
type problem struct {
	kr         kernel
	c, a, b    []float32
	m, n, k    int
	accumulate bool
	aT, bT     bool
}

func gemm(fn string, c, a, b []float32, m, n, k int, accumulate, aT, bT bool) {
	check(fn, c, a, b, m, n, k)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !accumulate {
			clear(c[:m*n])
		}
		return
	}
	pr := &problem{kr: active, c: c, a: a, b: b, m: m, n: n, k: k, accumulate: accumulate, aT: aT, bT: bT}
	pr.run()
}

var floatPool sync.Pool // *[]float32

func getBuf(n int) *[]float32 {
	if p, ok := floatPool.Get().(*[]float32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]float32, n)
	return &s
}

func putBuf(p *[]float32) { floatPool.Put(p) }

func (pr *problem) run() {
	mr, nr := pr.kr.mr, pr.kr.nr
	m, n, k := pr.m, pr.n, pr.k
	procs := runtime.GOMAXPROCS(0)
	if m*n*k < parallelMin {
		procs = 1
	}
	// Rows are processed in super-blocks so the packed copy of a stays bounded.
	sbRows := max(mr, maxAPack/k/mr*mr)
	slabs := (n + ncBlock - 1) / ncBlock
	for i0 := 0; i0 < m; i0 += sbRows {
		rows := min(sbRows, m-i0)
		tiles := (rows + mr - 1) / mr
		ap := getBuf(tiles * mr * k)
		pr.packAAll(*ap, i0, rows, procs)

		// Split rows too when there are too few column slabs to balance.
		rowBlocks := 1
		if procs > 1 && slabs%procs != 0 && slabs < 8*procs {
			rowBlocks = min(tiles, (8*procs+slabs-1)/slabs)
		}
		tilesPerBlock := (tiles + rowBlocks - 1) / rowBlocks
		rowBlocks = (tiles + tilesPerBlock - 1) / tilesPerBlock
		ntask := slabs * rowBlocks
		workers := min(procs, ntask)

		var next atomic.Int64
		work := func() {
			bp := getBuf(kcBlock * ncBlock)
			tmp := getBuf(mr * nr)
			for {
				t := int(next.Add(1) - 1)
				if t >= ntask {
					break
				}
				s, rb := t%slabs, t/slabs
				t0 := rb * tilesPerBlock
				t1 := min(tiles, t0+tilesPerBlock)
				pr.task(*ap, *bp, *tmp, i0, rows, t0, t1, s*ncBlock, min(n, (s+1)*ncBlock))
			}
			putBuf(bp)
			putBuf(tmp)
		}
		if workers == 1 {
			work()
		} else {
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Go(work)
			}
			wg.Wait()
		}
		putBuf(ap)
	}
}

// packAAll packs rows [i0, i0+rows) of op(a) into ap: tile t (mr rows) holds
// k·mr floats laid out [p*mr + r], rows past the end zero-filled.
func (pr *problem) packAAll(ap []float32, i0, rows, procs int) {
	mr := pr.kr.mr
	tiles := (rows + mr - 1) / mr
	if procs == 1 || tiles < 2 {
		pr.packA(ap, i0, rows, 0, tiles)
		return
	}
	workers := min(procs, tiles)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		t0, t1 := tiles*w/workers, tiles*(w+1)/workers
		wg.Go(func() { pr.packA(ap, i0, rows, t0, t1) })
	}
	wg.Wait()
}

func (pr *problem) packA(ap []float32, i0, rows, t0, t1 int) {
	mr, k, m := pr.kr.mr, pr.k, pr.m
	a := pr.a
	for t := t0; t < t1; t++ {
		dst := ap[t*mr*k : (t+1)*mr*k]
		ib := i0 + t*mr
		w := min(mr, i0+rows-ib)
		if pr.aT { // a is k×m: each step p is a contiguous run of w floats.
			for p := 0; p < k; p++ {
				d := dst[p*mr : p*mr+mr]
				copy(d, a[p*m+ib:p*m+ib+w])
				clear(d[w:])
			}
			continue
		}
		// a is m×k: transpose rows into the panel.
		transpose(dst, mr, a, k, ib, w, 0, k)
	}
}

// transpose writes dst[p*ld+q] = src[(r0+q)*k+p0+p] for q < w, p < kc, and
// zero for w <= q < ld.
func transpose(dst []float32, ld int, src []float32, k, r0, w, p0, kc int) {
	q := 0
	for ; q+8 <= w; q += 8 {
		s0 := src[(r0+q)*k+p0 : (r0+q)*k+p0+kc]
		s1 := src[(r0+q+1)*k+p0 : (r0+q+1)*k+p0+kc]
		s2 := src[(r0+q+2)*k+p0 : (r0+q+2)*k+p0+kc]
		s3 := src[(r0+q+3)*k+p0 : (r0+q+3)*k+p0+kc]
		s4 := src[(r0+q+4)*k+p0 : (r0+q+4)*k+p0+kc]
		s5 := src[(r0+q+5)*k+p0 : (r0+q+5)*k+p0+kc]
		s6 := src[(r0+q+6)*k+p0 : (r0+q+6)*k+p0+kc]
		s7 := src[(r0+q+7)*k+p0 : (r0+q+7)*k+p0+kc]
		for p := range s0 {
			d := dst[p*ld+q : p*ld+q+8 : p*ld+q+8]
			d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
			d[4], d[5], d[6], d[7] = s4[p], s5[p], s6[p], s7[p]
		}
	}
	for ; q+4 <= w; q += 4 {
		s0 := src[(r0+q)*k+p0 : (r0+q)*k+p0+kc]
		s1 := src[(r0+q+1)*k+p0 : (r0+q+1)*k+p0+kc]
		s2 := src[(r0+q+2)*k+p0 : (r0+q+2)*k+p0+kc]
		s3 := src[(r0+q+3)*k+p0 : (r0+q+3)*k+p0+kc]
		for p := range s0 {
			d := dst[p*ld+q : p*ld+q+4 : p*ld+q+4]
			d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
		}
	}
	for ; q < w; q++ {
		s0 := src[(r0+q)*k+p0 : (r0+q)*k+p0+kc]
		for p, v := range s0 {
			dst[p*ld+q] = v
		}
	}
	if w < ld {
		for p := 0; p < kc; p++ {
			clear(dst[p*ld+w : p*ld+ld])
		}
	}
}

// packB packs op(b) steps [pc, pc+kc) × columns [j0, j1) into bp: column
// tile u (nr columns) holds kc·nr floats laid out [p*nr + q] at offset
// u*nr*kc, columns past j1 zero-filled.
func (pr *problem) packB(bp []float32, pc, kc, j0, j1 int) {
	nr, n, k := pr.kr.nr, pr.n, pr.k
	b := pr.b
	for u := 0; j0+u*nr < j1; u++ {
		jb := j0 + u*nr
		w := min(nr, j1-jb)
		dst := bp[u*nr*kc : (u+1)*nr*kc]
		if !pr.bT { // b is k×n: each step is a contiguous run of w floats.
			for p := 0; p < kc; p++ {
				d := dst[p*nr : p*nr+nr]
				copy(d, b[(pc+p)*n+jb:(pc+p)*n+jb+w])
				clear(d[w:])
			}
			continue
		}
		// b is n×k: transpose, 4 columns at a time.
		transpose(dst, nr, b, k, jb, w, pc, kc)
	}
}

// task computes c rows of tiles [t0, t1) (of the super-block starting at
// row i0 with rows rows) × columns [j0, j1), over the full k.
func (pr *problem) task(ap, bp, tmp []float32, i0, rows, t0, t1, j0, j1 int) {
	mr, nr := pr.kr.mr, pr.kr.nr
	n, k := pr.n, pr.k
	c := pr.c
	fn := pr.kr.fn
	for pc := 0; pc < k; pc += kcBlock {
		kc := min(kcBlock, k-pc)
		pr.packB(bp, pc, kc, j0, j1)
		load := pr.accumulate || pc > 0
		for t := t0; t < t1; t++ {
			ib := i0 + t*mr
			h := min(mr, i0+rows-ib)
			apan := ap[t*mr*k+pc*mr : t*mr*k+(pc+kc)*mr]
			for u := 0; j0+u*nr < j1; u++ {
				jb := j0 + u*nr
				w := min(nr, j1-jb)
				bpan := bp[u*nr*kc : (u+1)*nr*kc]
				if h == mr && w == nr {
					fn(kc, apan, bpan, c[ib*n+jb:(ib+mr-1)*n+jb+nr], n, load)
					continue
				}
				// Tail tile: run the same kernel on a zero-padded copy.
				if load {
					for r := 0; r < mr; r++ {
						d := tmp[r*nr : r*nr+nr]
						if r < h {
							copy(d, c[(ib+r)*n+jb:(ib+r)*n+jb+w])
							clear(d[w:])
						} else {
							clear(d)
						}
					}
				}
				fn(kc, apan, bpan, tmp, nr, load)
				for r := 0; r < h; r++ {
					copy(c[(ib+r)*n+jb:(ib+r)*n+jb+w], tmp[r*nr:r*nr+w])
				}
			}
		}
	}
}
