package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// allBF16 holds the float32 value of every bf16 bit pattern.
var allBF16 = func() []float32 {
	v := make([]float32, 1<<16)
	for b := range v {
		v[b] = bf16ToFloat32(uint16(b))
	}
	return v
}()

// cutScales returns scales that test the cut at its edges, with both
// signs: zero, infinite and NaN scales, denormal and huge ones, and every
// nth of these (n = 1: all of them): scales that put a bf16 value's product
// on the tie 0.5 (or one ulp either side), random ones over the whole
// float32 range, and ones of real weights.
func cutScales(n int) []float32 {
	scales := []float32{0, 1, 1e5, 1e-5, 0.5, 2, math.SmallestNonzeroFloat32, math.MaxFloat32,
		float32(math.Inf(1)), float32(math.NaN()), math.Float32frombits(0x007fffff)}
	var more []float32
	r := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		v := bf16ToFloat32(uint16(1 + r.IntN(0x7f7f))) // finite, non-zero
		tie := 0.5 / v
		more = append(more, tie, math.Nextafter32(tie, 0), math.Nextafter32(tie, float32(math.Inf(1))))
	}
	for range 200 {
		more = append(more, math.Float32frombits(r.Uint32()&0x7fffffff))
	}
	for range 100 { // the scales of real weights: 1/mean|W|
		more = append(more, float32(math.Exp(r.Float64()*20-2)))
	}
	for i, s := range more {
		if i%n == 0 {
			scales = append(scales, s)
		}
	}
	for _, s := range slices.Clone(scales) {
		scales = append(scales, -s)
	}
	return scales
}

// sample is 1, or n under -short (-race makes these tests slow).
func sample(n int) int {
	if testing.Short() {
		return n
	}
	return 1
}

// The cut gives, on every bf16 pattern (±0, denormals, ±Inf and NaNs
// included), the code of the value Ternarize gives at that scale.
func TestBF16CutIsTernarize(t *testing.T) {
	want := make([]int8, len(allBF16))
	for _, s := range cutScales(sample(3)) {
		Ternarize(want, allBF16, s)
		c := newBF16Cut(s)
		for b, w := range want {
			if got := c.code(uint16(b)); got != uint8(w+1) {
				t.Fatalf("scale %g (%#08x), pattern %#04x (%g): code %d, Ternarize gives %d (code %d); cut %+v",
					s, math.Float32bits(s), b, allBF16[b], got, w, w+1, c)
			}
		}
	}
}

// Today's behaviour, written out: NaN weights and a NaN or zero scale give 0,
// infinities give their sign, a negative scale flips the signs.
func TestBF16CutSpecialValues(t *testing.T) {
	const nan, inf, negInf, one, negOne = 0x7fc0, 0x7f80, 0xff80, 0x3f80, 0xbf80
	for _, c := range []struct {
		scale float32
		b     uint16
		code  uint8
	}{
		{1, nan, 1}, {1, nan | 0x8000, 1}, {1, 0x7f81, 1}, {1, 0xffff, 1},
		{1, inf, 2}, {1, negInf, 0}, {1e-30, inf, 2}, {-1, inf, 0},
		{1, one, 2}, {1, negOne, 0}, {-1, one, 0}, {-1, negOne, 2},
		{1, 0x3f00, 1},                // 0.5 rounds to even: 0
		{1, 0x3f01, 2},                // just above 0.5
		{float32(math.NaN()), inf, 1}, // NaN·x is NaN: 0
		{0, inf, 1}, {0, one, 1},      // 0·Inf is NaN, 0·1 is 0
		{float32(math.Inf(1)), 0x0001, 2},     // a denormal times Inf
		{float32(math.Inf(1)), 0x8000, 1},     // -0 times Inf is NaN
		{math.MaxFloat32, 0x0001, 1},          // 2^-133 · 3.4e38 < 0.5
		{math.MaxFloat32, 0x0080 | 0x8000, 0}, // -2^-126 · 3.4e38 = -2^2
	} {
		if got := newBF16Cut(c.scale).code(c.b); got != c.code {
			t.Errorf("scale %g, pattern %#04x: code %d, want %d", c.scale, c.b, got, c.code)
		}
	}
}

// randomPatterns returns n bf16 patterns, a mix of normal weights of
// standard deviation 0.02 and arbitrary patterns (NaN, ±Inf, denormals).
func randomPatterns(r *rand.Rand, n int) []uint16 {
	w := make([]uint16, n)
	for i := range w {
		if r.IntN(8) == 0 {
			w[i] = uint16(r.Uint32())
			continue
		}
		w[i] = uint16(math.Float32bits(float32(r.NormFloat64()*0.02)) >> 16)
	}
	return w
}

// packReference packs w [rows, cols] one weight at a time into a matrix of
// zero weights, without packRow.
func packReference(w []int8, rows, cols int) *Ternary {
	t := newTernary(rows, cols)
	for r := range rows {
		for c := range cols {
			t.setWeight(r, c, w[r*cols+c])
		}
	}
	return t
}

func checkSameTernary(t *testing.T, what string, got, want *Ternary) {
	t.Helper()
	if got.Rows != want.Rows || got.Cols != want.Cols || got.blocks != want.blocks || !slices.Equal(got.packed, want.packed) {
		i := 0
		for i < min(len(got.packed), len(want.packed)) && got.packed[i] == want.packed[i] {
			i++
		}
		t.Fatalf("%s: [%d, %d] %d blocks, %d bytes, want [%d, %d] %d blocks, %d bytes; first difference at byte %d",
			what, got.Rows, got.Cols, got.blocks, len(got.packed), want.Rows, want.Cols, want.blocks, len(want.packed), i)
	}
	if !slices.Equal(got.Unpack(), want.Unpack()) {
		t.Fatalf("%s: Unpack differs", what)
	}
}

// packShapes are shapes with rows not a multiple of 4 and cols not a
// multiple of 256, empty ones, and two large enough to pack in parallel.
var packShapes = [][2]int{
	{0, 0}, {0, 256}, {3, 0}, {1, 1}, {1, 255}, {3, 256}, {4, 257}, {5, 63},
	{7, 512}, {9, 700}, {13, 1000}, {64, 300}, {130, 2560}, {515, 1000},
}

// PackTernaryBF16 gives, on every supported path, the bytes of Ternarize
// then PackTernary, and PackTernary those of packing weight by weight.
func TestPackTernaryBF16MatchesPackTernary(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, shape := range packShapes {
		rows, cols := shape[0], shape[1]
		w := randomPatterns(r, rows*cols)
		values := make([]float32, len(w))
		for i, b := range w {
			values[i] = bf16ToFloat32(b)
		}
		scales := []float32{0, float32(math.NaN()), -30, 1 / (0.8 * 0.02)}
		for range 3 / sample(3) {
			scales = append(scales, float32(math.Exp(r.Float64()*10)))
		}
		tern := make([]int8, len(w))
		for _, s := range scales {
			Ternarize(tern, values, s)
			want, err := PackTernary(tern, rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("[%d, %d] scale %g", rows, cols, s)
			checkSameTernary(t, what+": PackTernary", want, packReference(tern, rows, cols))
			for _, p := range SupportedPaths() {
				got, err := PackTernaryBF16Path(p, w, rows, cols, s)
				if err != nil {
					t.Fatal(err)
				}
				checkSameTernary(t, what+": path "+string(p), got, want)
			}
		}
	}
}

// cutEdges are the patterns where a cut's ranges start and end, and those
// of ±0, ±Inf and the smallest NaNs.
func cutEdges(c bf16Cut) []uint16 {
	return []uint16{c.plus - 1, c.plus, c.plus + c.n - 1, c.plus + c.n, c.minus - 1, c.minus, c.minus + c.n - 1, c.minus + c.n,
		0, 0x8000, 0x7f80, 0xff80, 0x7f81, 0xff81, 0x7fff, 0xffff}
}

// Every path packs like the generic one, which looks Ternarize up, at the
// special scales and every eighth of the others (the cut is checked
// against Ternarize at all of them): all
// 65536 patterns once, then each edge of the cut at each of a block's 256
// positions (each lane of each plane of the SIMD code), next to other edges.
func TestPackTernaryBF16PathsExhaustive(t *testing.T) {
	scales := cutScales(sample(5) * 8)
	for _, s := range scales {
		c := newBF16Cut(s)
		w := make([]uint16, 1<<16, 1<<16+len(cutEdges(c))*blockCols)
		for b := range w {
			w[b] = uint16(b)
		}
		edges := cutEdges(c)
		for i := range edges { // block i holds edge (i+j) mod 16 at position j
			for j := range blockCols {
				w = append(w, edges[(i+j)%len(edges)])
			}
		}
		rows, cols := len(w)/blockCols, blockCols
		want, err := PackTernaryBF16Path(Generic, w, rows, cols, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range SupportedPaths()[1:] {
			got, err := PackTernaryBF16Path(p, w, rows, cols, s)
			if err != nil {
				t.Fatal(err)
			}
			checkSameTernary(t, fmt.Sprintf("scale %g, path %s", s, p), got, want)
		}
	}
}

func TestPackTernaryBF16Errors(t *testing.T) {
	for _, c := range []struct {
		p          Path
		n          int
		rows, cols int
		err        string
	}{
		{Generic, 12, 3, 5, "len(w) = 12, want rows*cols = 3*5 = 15"},
		{Generic, 0, -1, 0, "negative shape [-1, 0]"},
		{"sse9", 12, 3, 4, `unknown path "sse9"`},
	} {
		_, err := PackTernaryBF16Path(c.p, make([]uint16, c.n), c.rows, c.cols, 1)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("PackTernaryBF16Path(%s, len %d, [%d, %d]) = %v, want an error containing %q", c.p, c.n, c.rows, c.cols, err, c.err)
		}
	}
}

// BenchmarkPackTernaryBF16 packs the largest linear of 2B-4T on each path,
// and, for comparison, ternarises through a table into int8 and packs that.
func BenchmarkPackTernaryBF16(b *testing.B) {
	const rows, cols = 2560, 6912
	r := rand.New(rand.NewPCG(5, 6))
	w := make([]uint16, rows*cols)
	for i := range w {
		w[i] = uint16(math.Float32bits(float32(r.NormFloat64()*0.02)) >> 16)
	}
	const scale = 1 / (0.8 * 0.02)
	perWeight := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(w)), "ns/weight")
	}
	for _, p := range SupportedPaths() {
		b.Run(string(p), func(b *testing.B) {
			for range b.N {
				if _, err := PackTernaryBF16Path(p, w, rows, cols, scale); err != nil {
					b.Fatal(err)
				}
			}
			perWeight(b)
		})
	}
	b.Run("table+PackTernary", func(b *testing.B) {
		var table [1 << 16]int8
		tern := make([]int8, len(w))
		for range b.N {
			Ternarize(table[:], allBF16, scale)
			for i, v := range w {
				tern[i] = table[v]
			}
			if _, err := PackTernary(tern, rows, cols); err != nil {
				b.Fatal(err)
			}
		}
		perWeight(b)
	})
}
