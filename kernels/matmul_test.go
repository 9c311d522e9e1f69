package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// referenceMatMul is the reference loop on unpacked weights w [rows, cols].
func referenceMatMul(w []int8, x []int8, rows, cols, tokens int) []int32 {
	dst := make([]int32, tokens*rows)
	for tok := 0; tok < tokens; tok++ {
		for r := 0; r < rows; r++ {
			var sum int32
			for c := 0; c < cols; c++ {
				sum += int32(w[r*cols+c]) * int32(x[tok*cols+c])
			}
			dst[tok*rows+r] = sum
		}
	}
	return dst
}

func randomTernary(rng *rand.Rand, n int) []int8 {
	w := make([]int8, n)
	for i := range w {
		w[i] = int8(rng.IntN(3)) - 1
	}
	return w
}

func randomInt8(rng *rand.Rand, n int) []int8 {
	x := make([]int8, n)
	for i := range x {
		x[i] = int8(rng.IntN(256) - 128)
	}
	return x
}

// guard surrounds the output with sentinels to catch out-of-bounds writes.
const guard, guardValue = 16, int32(-0x5a5a5a5a)

func checkMatMul(t *testing.T, p Path, w, x []int8, rows, cols, tokens int) {
	t.Helper()
	packed, err := PackTernary(w, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	want := referenceMatMul(w, x, rows, cols, tokens)
	buf := make([]int32, tokens*rows+2*guard)
	for i := range buf {
		buf[i] = guardValue
	}
	if err := packed.MatMulPath(p, buf[guard:guard+tokens*rows], x, tokens); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < guard; i++ {
		if buf[i] != guardValue || buf[len(buf)-1-i] != guardValue {
			t.Fatalf("path %s [%d, %d]×%d: guard value overwritten", p, rows, cols, tokens)
		}
	}
	got := buf[guard : guard+tokens*rows]
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("path %s [%d, %d]×%d tokens: first difference at token %d, row %d: got %d, want %d",
				p, rows, cols, tokens, i/rows, i%rows, got[i], want[i])
		}
	}
}

func TestMatMulPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{{1, 1, 1}, {4, 256, 1}, {5, 257, 3}, {3, 100, 4}, {7, 300, 5}, {64, 512, 8}, {65, 513, 9}, {130, 1100, 17}, {8, 0, 2}, {0, 8, 2}}
	for _, p := range SupportedPaths() {
		for _, s := range shapes {
			rows, cols, tokens := s[0], s[1], s[2]
			t.Run(fmt.Sprintf("%s/%dx%dx%d", p, rows, cols, tokens), func(t *testing.T) {
				checkMatMul(t, p, randomTernary(rng, rows*cols), randomInt8(rng, tokens*cols), rows, cols, tokens)
			})
		}
	}
}

func TestMatMulExtremes(t *testing.T) {
	for _, p := range SupportedPaths() {
		for _, cols := range []int{4096, 16384} {
			for _, c := range []struct {
				w, x int8
			}{{1, 127}, {-1, -128}, {1, -128}, {-1, 127}} {
				rows, tokens := 5, 5
				w := make([]int8, rows*cols)
				for i := range w {
					w[i] = c.w
				}
				x := make([]int8, tokens*cols)
				for i := range x {
					x[i] = c.x
				}
				checkMatMul(t, p, w, x, rows, cols, tokens)
			}
		}
	}
}

// TestMatMulOffsets shifts x by 1..3 bytes so that no load is aligned.
func TestMatMulOffsets(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	rows, cols, tokens := 9, 512, 6
	w := randomTernary(rng, rows*cols)
	buf := randomInt8(rng, tokens*cols+3)
	for _, p := range SupportedPaths() {
		for offset := 1; offset <= 3; offset++ {
			checkMatMul(t, p, w, buf[offset:offset+tokens*cols], rows, cols, tokens)
		}
	}
}
