package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

type op struct {
	name string
	f    func(c, a, b []float32, m, n, k int, accumulate bool)
	ref  func(c, a, b []float32, m, n, k int, accumulate bool)
	// aIdx/bIdx give the storage index of A(i,p) and B(p,j).
	aIdx func(i, p, m, k int) int
	bIdx func(p, j, n, k int) int
}

var ops = []op{
	{"NT", NT, NTRef, func(i, p, m, k int) int { return i*k + p }, func(p, j, n, k int) int { return j*k + p }},
	{"NN", NN, NNRef, func(i, p, m, k int) int { return i*k + p }, func(p, j, n, k int) int { return p*n + j }},
	{"TN", TN, TNRef, func(i, p, m, k int) int { return p*m + i }, func(p, j, n, k int) int { return p*n + j }},
}

// withKernel runs f with kr as the active kernel.
func withKernel(kr kernel, f func()) {
	old := active
	active = kr
	defer func() { active = old }()
	f()
}

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.Float64()*2 - 1)
	}
	return v
}

const guard = 37

var sentinel = float32(math.Float32frombits(0x7fc0beef)) // a NaN payload

// guarded returns a buffer of n floats surrounded by sentinel guards, and
// the inner slice (len n, cap n so appends cannot grow into the guard).
func guarded(init []float32) (buf, inner []float32) {
	n := len(init)
	buf = make([]float32, n+2*guard)
	for i := range buf {
		buf[i] = sentinel
	}
	copy(buf[guard:], init)
	return buf, buf[guard : guard+n : guard+n]
}

func checkGuards(t *testing.T, buf []float32, n int, what string) {
	t.Helper()
	for i := 0; i < guard; i++ {
		if math.Float32bits(buf[i]) != math.Float32bits(sentinel) ||
			math.Float32bits(buf[guard+n+i]) != math.Float32bits(sentinel) {
			t.Fatalf("%s: write outside c (guard %d)", what, i)
		}
	}
}

// checkOne runs o on random data and compares with a float64 reference:
// |c - ref| <= 1e-5 * (Σ|a||b| + |c0|) per element.
func checkOne(t *testing.T, rng *rand.Rand, o op, m, n, k int, acc bool) {
	t.Helper()
	a := randVec(rng, m*k)
	b := randVec(rng, k*n)
	c0 := randVec(rng, m*n)
	buf, c := guarded(c0)
	o.f(c, a, b, m, n, k, acc)
	what := fmt.Sprintf("%s %s m=%d n=%d k=%d acc=%v", Path(), o.name, m, n, k, acc)
	checkGuards(t, buf, m*n, what)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, bound float64
			if acc {
				s = float64(c0[i*n+j])
				bound = math.Abs(s)
			}
			for p := 0; p < k; p++ {
				x := float64(a[o.aIdx(i, p, m, k)]) * float64(b[o.bIdx(p, j, n, k)])
				s += x
				bound += math.Abs(x)
			}
			got := float64(c[i*n+j])
			if !(math.Abs(got-s) <= 1e-5*bound+1e-30) {
				t.Fatalf("%s: c[%d,%d]=%g want %g (bound %g)", what, i, j, got, s, bound)
			}
		}
	}
}

var oddSizes = []int{1, 2, 3, 4, 5, 7, 8, 11, 13, 15, 16, 17, 23, 31, 32, 33, 37, 47, 48, 53, 61, 64, 65, 67, 70}

func TestAccuracy(t *testing.T) {
	trials := 60
	if raceEnabled || testing.Short() {
		trials = 12
	}
	for _, kr := range kernels() {
		withKernel(kr, func() {
			for _, o := range ops {
				rng := rand.New(rand.NewPCG(1, uint64(len(o.name))))
				// Edge cases first, then random odd sizes.
				cases := [][3]int{{1, 1, 1}, {1, 1, 0}, {3, 5, 0}, {70, 70, 70}, {kr.mr, kr.nr, 1}, {kr.mr + 1, kr.nr + 1, 3}, {0, 5, 3}, {5, 0, 3}}
				for range trials {
					cases = append(cases, [3]int{oddSizes[rng.IntN(len(oddSizes))], oddSizes[rng.IntN(len(oddSizes))], oddSizes[rng.IntN(len(oddSizes))]})
				}
				for ci, s := range cases {
					checkOne(t, rng, o, s[0], s[1], s[2], ci%2 == 1)
				}
			}
		})
	}
}

func TestLargeK(t *testing.T) {
	k := 6912
	if raceEnabled {
		k = 700
	}
	for _, kr := range kernels() {
		withKernel(kr, func() {
			for _, o := range ops {
				rng := rand.New(rand.NewPCG(2, 3))
				checkOne(t, rng, o, 13, 37, k, false)
				checkOne(t, rng, o, 2*kr.mr, 2*kr.nr, k+1, true)
			}
		})
	}
}

// TestParallelSizes exercises multi-slab, row-split and super-block paths.
func TestParallelSizes(t *testing.T) {
	sizes := [][3]int{{67, 531, 301}, {301, 67, 131}, {5, 1100, 77}}
	if raceEnabled {
		sizes = [][3]int{{37, 301, 97}, {5, 600, 60}}
	}
	for _, kr := range kernels() {
		withKernel(kr, func() {
			for _, o := range ops {
				rng := rand.New(rand.NewPCG(4, 5))
				for i, s := range sizes {
					checkOne(t, rng, o, s[0], s[1], s[2], i%2 == 0)
				}
			}
		})
	}
}

func bitsEqual(x, y []float32) int {
	for i := range x {
		if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
			return i
		}
	}
	return -1
}

// TestDeterminism: identical bits under GOMAXPROCS 1 and 2 and across runs.
func TestDeterminism(t *testing.T) {
	sizes := [][3]int{{67, 531, 301}, {131, 37, 529}, {253, 257, 263}}
	if raceEnabled {
		sizes = [][3]int{{37, 301, 97}, {29, 53, 300}}
	}
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	for _, kr := range kernels() {
		withKernel(kr, func() {
			for _, o := range ops {
				rng := rand.New(rand.NewPCG(6, 7))
				for _, s := range sizes {
					m, n, k := s[0], s[1], s[2]
					a, b, c0 := randVec(rng, m*k), randVec(rng, k*n), randVec(rng, m*n)
					var outs [][]float32
					for _, procs := range []int{1, 2, 2, 3, 1} {
						runtime.GOMAXPROCS(procs)
						for _, acc := range []bool{false, true} {
							c := append([]float32(nil), c0...)
							o.f(c, a, b, m, n, k, acc)
							outs = append(outs, c)
						}
					}
					for i := 2; i < len(outs); i++ {
						if j := bitsEqual(outs[i%2], outs[i]); j >= 0 {
							t.Fatalf("%s %s %v: run %d differs at %d: %x vs %x", kr.name, o.name, s, i, j,
								math.Float32bits(outs[i%2][j]), math.Float32bits(outs[i][j]))
						}
					}
				}
			}
		})
	}
}

// TestPositionIndependence: an element's bits do not depend on where its
// tile lies: sub-problems (row and column slices) reproduce the full result.
func TestPositionIndependence(t *testing.T) {
	m, n, k := 45, 300, 301
	if raceEnabled {
		m, n, k = 31, 300, 61
	}
	rng := rand.New(rand.NewPCG(8, 9))
	a, b := randVec(rng, m*k), randVec(rng, k*n)
	for _, kr := range kernels() {
		withKernel(kr, func() {
			full := make([]float32, m*n)
			NT(full, a, b, m, n, k, false)
			// Rows i0..i1 and columns j0..j1 of NT (b rows are columns of c).
			for _, r := range [][4]int{{0, 1, 0, n}, {5, 6, 3, 40}, {7, 30, 1, n}, {m - 1, m, n - 3, n}, {3, 20, 17, 290}} {
				i0, i1, j0, j1 := r[0], r[1], r[2], r[3]
				sub := make([]float32, (i1-i0)*(j1-j0))
				NT(sub, a[i0*k:i1*k], b[j0*k:j1*k], i1-i0, j1-j0, k, false)
				for i := i0; i < i1; i++ {
					got := sub[(i-i0)*(j1-j0) : (i-i0+1)*(j1-j0)]
					want := full[i*n+j0 : i*n+j1]
					if j := bitsEqual(got, want); j >= 0 {
						t.Fatalf("%s NT sub %v: row %d col %d differs", kr.name, r, i, j0+j)
					}
				}
			}
			// NN / TN: row slices of the result.
			fullNN := make([]float32, m*n)
			NN(fullNN, a, b, m, n, k, false)
			sub := make([]float32, 3*n)
			NN(sub, a[11*k:14*k], b, 3, n, k, false)
			if j := bitsEqual(sub, fullNN[11*n:14*n]); j >= 0 {
				t.Fatalf("%s NN row slice differs at %d", kr.name, j)
			}
		})
	}
}

func TestPanics(t *testing.T) {
	for _, o := range ops {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), "sgemm."+o.name) || !strings.Contains(fmt.Sprint(r), "m=2 n=3 k=4") {
					t.Errorf("%s: got panic %v", o.name, r)
				}
			}()
			o.f(make([]float32, 5), make([]float32, 8), make([]float32, 12), 2, 3, 4, false)
		}()
	}
}

func TestPath(t *testing.T) {
	switch p := Path(); p {
	case "avx512", "avx2", "generic":
		t.Logf("path %s; kernels available:", p)
		for _, kr := range kernels() {
			t.Logf("  %s (%d×%d)", kr.name, kr.mr, kr.nr)
		}
	default:
		t.Fatalf("unexpected Path %q", p)
	}
}

func TestRefs(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	for _, o := range ops {
		checkOneRef(t, rng, o)
	}
}

// checkOneRef validates the exported reference loops themselves.
func checkOneRef(t *testing.T, rng *rand.Rand, o op) {
	m, n, k := 7, 9, 11
	a, b, c := randVec(rng, m*k), randVec(rng, k*n), make([]float32, m*n)
	o.ref(c, a, b, m, n, k, false)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(a[o.aIdx(i, p, m, k)]) * float64(b[o.bIdx(p, j, n, k)])
			}
			if math.Abs(float64(c[i*n+j])-s) > 1e-5*float64(k) {
				t.Fatalf("%sRef wrong at %d,%d", o.name, i, j)
			}
		}
	}
}

// benchOp reports GFLOPS (wall clock) and GFLOP/cpu-s (flops per second of
// process CPU time; on a shared machine ×GOMAXPROCS estimates the
// uncontended rate).
func benchOp(b *testing.B, f func(c, a, bb []float32, m, n, k int, accumulate bool), m, n, k int) {
	rng := rand.New(rand.NewPCG(1, 2))
	a, bb, c := randVec(rng, m*k), randVec(rng, k*n), make([]float32, m*n)
	flop := 2 * float64(m) * float64(n) * float64(k)
	for _, kr := range kernels() {
		b.Run(kr.name, func(b *testing.B) {
			withKernel(kr, func() {
				f(c, a, bb, m, n, k, false) // warm up buffers
				cpu0 := cpuSeconds()
				for b.Loop() {
					f(c, a, bb, m, n, k, false)
				}
				b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
				if cpu := cpuSeconds() - cpu0; cpu > 0 {
					b.ReportMetric(flop*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
				}
			})
		})
	}
}

// lm_head slice: logits[256×16032] = x[256×2560] · E[16032×2560]ᵀ.
func BenchmarkNT(b *testing.B) { benchOp(b, NT, 256, 16032, 2560) }

// dX[256×2560] = dY[256×6912] · W[6912×2560].
func BenchmarkNN(b *testing.B) { benchOp(b, NN, 256, 2560, 6912) }

// dW[6912×2560] = dY[256×6912]ᵀ · X[256×2560].
func BenchmarkTN(b *testing.B) { benchOp(b, TN, 6912, 2560, 256) }

// TestSIMDPathsAgree: the AVX-512 and AVX2 kernels evaluate the same
// sequential FMA chain per element, so they must agree bitwise.
func TestSIMDPathsAgree(t *testing.T) {
	var simd []kernel
	for _, kr := range kernels() {
		if kr.name != "generic" {
			simd = append(simd, kr)
		}
	}
	if len(simd) < 2 {
		t.Skip("fewer than two SIMD kernels on this machine")
	}
	rng := rand.New(rand.NewPCG(12, 13))
	for _, o := range ops {
		for _, s := range [][3]int{{13, 37, 300}, {70, 65, 7}, {25, 100, 513}} {
			m, n, k := s[0], s[1], s[2]
			a, b, c0 := randVec(rng, m*k), randVec(rng, k*n), randVec(rng, m*n)
			var outs [][]float32
			for _, kr := range simd {
				withKernel(kr, func() {
					c := append([]float32(nil), c0...)
					o.f(c, a, b, m, n, k, true)
					outs = append(outs, c)
				})
			}
			for i := 1; i < len(outs); i++ {
				if j := bitsEqual(outs[0], outs[i]); j >= 0 {
					t.Fatalf("%s %v: %s and %s differ at %d", o.name, s, simd[0].name, simd[i].name, j)
				}
			}
		}
	}
}

// TestSuperBlocks forces several row super-blocks and checks the result is
// accurate and bit-identical to the single-block run.
func TestSuperBlocks(t *testing.T) {
	m, n, k := 61, 70, 300
	rng := rand.New(rand.NewPCG(14, 15))
	for _, kr := range kernels() {
		withKernel(kr, func() {
			for _, o := range ops {
				a, b := randVec(rng, m*k), randVec(rng, k*n)
				want := make([]float32, m*n)
				o.f(want, a, b, m, n, k, false)
				old := maxAPack
				maxAPack = 5 * kr.mr * k // 5 tiles per super-block
				got := make([]float32, m*n)
				o.f(got, a, b, m, n, k, false)
				maxAPack = old
				if j := bitsEqual(got, want); j >= 0 {
					t.Fatalf("%s %s: super-block result differs at %d", kr.name, o.name, j)
				}
				maxAPack = 5 * kr.mr * k
				checkOne(t, rng, o, m, n, k, true)
				maxAPack = old
			}
		})
	}
}
