package kernels

import (
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if child := os.Getenv("KERNELS_TEST_ENV_CHILD"); child != "" {
		// Re-executed by TestEnvPath: report what init made of KERNELS_PATH.
		msg := "active=" + string(ActivePath())
		if err := EnvError(); err != nil {
			msg += " error=" + err.Error()
		}
		os.Stdout.WriteString(msg + "\n")
		os.Exit(0)
	}
	os.Stdout.WriteString("kernels: active path " + string(ActivePath()) + "\n")
	os.Exit(m.Run())
}

func TestEnvPath(t *testing.T) {
	best := SupportedPaths()[len(SupportedPaths())-1]
	for _, c := range []struct {
		value, active, err string
	}{
		{value: "generic", active: "generic"},
		{value: "sse9", active: string(best), err: `KERNELS_PATH="sse9" ignored`},
	} {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "KERNELS_TEST_ENV_CHILD=1", PathEnv+"="+c.value)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s=%s: child failed: %v", PathEnv, c.value, err)
		}
		got := strings.TrimSpace(string(out))
		if !strings.HasPrefix(got, "active="+c.active) || !strings.Contains(got, c.err) || (c.err == "") != !strings.Contains(got, "error=") {
			t.Errorf("%s=%s: child reported %q, want active=%s and error containing %q", PathEnv, c.value, got, c.active, c.err)
		}
	}
}

func TestSetPath(t *testing.T) {
	before := ActivePath()
	defer SetPath(before)
	for _, p := range SupportedPaths() {
		if err := SetPath(p); err != nil || ActivePath() != p {
			t.Errorf("SetPath(%s) = %v, active %s", p, err, ActivePath())
		}
	}
	if err := SetPath("sse9"); err == nil || !strings.Contains(err.Error(), "generic, avx2, avx512vnni") {
		t.Errorf("SetPath(sse9) = %v, want the known paths named", err)
	}
	for _, p := range knownPaths {
		if !slices.Contains(SupportedPaths(), p) {
			if err := SetPath(p); err == nil || !strings.Contains(err.Error(), "missing") {
				t.Errorf("SetPath(%s) on a CPU without it = %v, want the missing features named", p, err)
			}
		}
	}
}

func TestQuantizeActivationsTies(t *testing.T) {
	// max |x| = 127 makes the scale exactly 1: the products are the inputs.
	x := []float32{127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -126.5}
	want := []int8{127, 0, 0, 2, -2, 2, -2, 4, -126}
	for _, p := range SupportedPaths() {
		q, scales := make([]int8, len(x)), make([]float32, 1)
		if err := QuantizeActivationsPath(p, q, scales, x, 1, len(x)); err != nil {
			t.Fatal(err)
		}
		if scales[0] != 1 || !slices.Equal(q, want) {
			t.Errorf("path %s: scale %v, q %v, want 1, %v", p, scales[0], q, want)
		}
	}
}

func TestQuantizeActivationsRows(t *testing.T) {
	x := []float32{
		0, 0, 0, // zero row: scale 127/1e-5, all zeros
		-2, 1, 0.5, // scale 63.5: -127, 63.5 → 64, 31.75 → 32
		math.MaxFloat32, -math.MaxFloat32, 1,
	}
	q, scales := make([]int8, 9), make([]float32, 3)
	QuantizeActivations(q, scales, x, 3, 3)
	want := []int8{0, 0, 0, -127, 64, 32, 127, -127, 0}
	if !slices.Equal(q, want) || scales[0] != float32(127)/float32(1e-5) || scales[1] != 63.5 {
		t.Errorf("q = %v, scales %v; want %v, [%v 63.5 …]", q, scales, want, float32(127)/float32(1e-5))
	}
	if err := QuantizeActivationsPath(Generic, q, scales, x, 3, 4); err == nil {
		t.Error("QuantizeActivationsPath with len(x) != rows*cols: no error")
	}
}

func TestWeightScaleTernarize(t *testing.T) {
	w := []float32{0.5, -0.5, 1.5, -1.5, 0.25, -0.25, 3, 0} // mean |w| = 0.9375
	if got, want := WeightScale(w), float32(1/0.9375); got != want {
		t.Errorf("WeightScale = %v, want %v", got, want)
	}
	if got := WeightScale(make([]float32, 3)); got != 1e5 {
		t.Errorf("WeightScale(zeros) = %v, want 1e5", got)
	}
	dst := make([]int8, len(w))
	Ternarize(dst, w, 2) // products 1, -1, 3, -3, 0.5, -0.5, 6, 0
	if want := []int8{1, -1, 1, -1, 0, 0, 1, 0}; !slices.Equal(dst, want) {
		t.Errorf("Ternarize = %v, want %v", dst, want)
	}
	Ternarize(dst[:1], []float32{float32(math.NaN())}, 1)
	if dst[0] != 0 {
		t.Errorf("Ternarize(NaN) = %d, want 0", dst[0])
	}
}

func TestPackTernaryErrors(t *testing.T) {
	w := []int8{0, 1, -1, 2}
	if _, err := PackTernary(w, 2, 2); err == nil || !strings.Contains(err.Error(), "w[3] (row 1, col 1) = 2") {
		t.Errorf("PackTernary(value 2) = %v, want the index named", err)
	}
	if _, err := PackTernary(w, 2, 3); err == nil || !strings.Contains(err.Error(), "len(w) = 4") {
		t.Errorf("PackTernary(len mismatch) = %v", err)
	}
}

func TestHFRoundTrip(t *testing.T) {
	for _, s := range [][2]int{{4, 1}, {8, 300}, {12, 257}} {
		rows, cols := s[0], s[1]
		w := make([]int8, rows*cols)
		for i := range w {
			w[i] = int8((i*7+i/cols)%3) - 1
		}
		packed, err := PackTernary(w, rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		hf := packed.HFPacked()
		// Row r sits in packed row r mod (rows/4), bits 2*(r div (rows/4)).
		quarter := rows / 4
		for r := 0; r < rows; r++ {
			if got := int8(hf[(r%quarter)*cols]>>(2*(r/quarter))&3) - 1; got != w[r*cols] {
				t.Fatalf("[%d, %d]: HF code of (%d, 0) = %d, want %d", rows, cols, r, got, w[r*cols])
			}
		}
		back, err := FromHFPacked(hf, rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(back.Unpack(), w) {
			t.Errorf("[%d, %d]: FromHFPacked(HFPacked(w)) differs from w", rows, cols)
		}
	}
	if _, err := FromHFPacked([]uint8{0b11 << 2}, 4, 1); err == nil || !strings.Contains(err.Error(), "= 3") {
		t.Errorf("FromHFPacked(code 3) = %v", err)
	}
	if _, err := FromHFPacked(nil, 5, 0); err == nil {
		t.Error("FromHFPacked(rows 5): no error")
	}
}
