package model

import (
	"encoding/binary"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"
)

// exampleGolden is the in-repository copy of the shared example case.
const exampleGolden = "../golden/cases/shared-example-tiny-gqa.safetensors"

// golden is a model case read from a bitnet-golden/v1 file.
type golden struct {
	bitlinear bool
	cfg       Config
	batch     Batch
	tensors   map[string]*Tensor // every F32 tensor by name
}

func loadGolden(t *testing.T, path string) *golden {
	t.Helper()
	g := loadGoldenAny(t, path)
	if g.bitlinear {
		t.Fatalf("%s: a bitlinear case, expected a model case", path)
	}
	return g
}

// loadGoldenAny reads a model or bitlinear case.
func loadGoldenAny(t *testing.T, path string) *golden {
	t.Helper()
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, meta, err := safetensors.ReadMetadata(buf)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if f := meta.Metadata()["format"]; f != "bitnet-golden/v1" {
		t.Fatalf("%s: format %q, expected bitnet-golden/v1", path, f)
	}
	g := &golden{bitlinear: meta.Metadata()["case"] == "bitlinear", tensors: map[string]*Tensor{}}
	if !g.bitlinear {
		if g.cfg, err = ParseConfig([]byte(meta.Metadata()["config"]), path+" config"); err != nil {
			t.Fatal(err)
		}
	}
	st, err := safetensors.Deserialize(buf)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, nt := range st.Tensors() {
		v := nt.TensorView
		shape := make([]int, len(v.Shape()))
		for i, d := range v.Shape() {
			shape[i] = int(d)
		}
		data := v.Data()
		switch v.DType() {
		case safetensors.F32:
			vals := make([]float32, len(data)/4)
			for i := range vals {
				vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
			}
			g.tensors[nt.Name] = &Tensor{Shape: shape, Data: vals}
		case safetensors.I64:
			if nt.Name != "input_ids" || len(shape) != 2 {
				t.Fatalf("%s: unexpected I64 tensor %s %v", path, nt.Name, shape)
			}
			ids := make([]int32, len(data)/8)
			for i := range ids {
				ids[i] = int32(binary.LittleEndian.Uint64(data[8*i:]))
			}
			g.batch = Batch{B: shape[0], T: shape[1], IDs: ids}
		}
	}
	return g
}

// params returns the golden file's parameters under their HF names.
func (g *golden) params() map[string]*Tensor {
	out := map[string]*Tensor{}
	for _, spec := range g.cfg.Inventory() {
		out[spec.Name] = g.tensors[spec.Name]
	}
	return out
}

// compareStats are the worst absolute error and the relative L2 error.
type compareStats struct{ maxAbs, relL2 float64 }

func compare(got, want []float32) compareStats {
	var num, den, maxAbs float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
		maxAbs = math.Max(maxAbs, math.Abs(d))
	}
	if den == 0 {
		return compareStats{maxAbs, math.Sqrt(num)}
	}
	return compareStats{maxAbs, math.Sqrt(num / den)}
}

func checkClose(t *testing.T, name string, got, want *Tensor, tol float64) compareStats {
	t.Helper()
	if !slices.Equal(got.Shape, want.Shape) {
		t.Errorf("%s: shape %v, want %v", name, got.Shape, want.Shape)
		return compareStats{}
	}
	s := compare(got.Data, want.Data)
	t.Logf("%-55s maxAbs %.3g relL2 %.3g", name, s.maxAbs, s.relL2)
	if !(s.relL2 <= tol) {
		t.Errorf("%s: relative L2 error %.3g > %.3g (max abs %.3g)", name, s.relL2, tol, s.maxAbs)
	}
	return s
}

func TestGoldenExampleForward(t *testing.T) {
	g := loadGolden(t, exampleGolden)
	m, err := FromTensors(g.cfg, g.params())
	if err != nil {
		t.Fatal(err)
	}
	for _, compute := range []Compute{ComputeFloat, ComputeKernels, ComputeFloat64} {
		t.Run(compute.String(), func(t *testing.T) {
			out, err := m.Forward(g.batch, ForwardOptions{Trace: true, Compute: compute})
			if err != nil {
				t.Fatal(err)
			}
			checkClose(t, "logits", out.Logits, g.tensors["logits"], 1e-5)
			for i, h := range out.Hidden {
				name := "hidden." + string(rune('0'+i))
				checkClose(t, name, h, g.tensors[name], 1e-5)
			}
			checkClose(t, "final_norm", out.FinalNorm, g.tensors["final_norm"], 1e-5)
			loss, err := CrossEntropy(out.Logits, g.batch)
			if err != nil {
				t.Fatal(err)
			}
			want := float64(g.tensors["loss"].Data[0])
			t.Logf("loss %.7f, golden %.7f", loss, want)
			if math.Abs(loss-want) > 1e-5*math.Abs(want) {
				t.Errorf("loss %.7f, want %.7f", loss, want)
			}
		})
	}
}

func TestGoldenExampleGradients(t *testing.T) {
	for _, compute := range []Compute{ComputeKernels, ComputeFloat, ComputeFloat64} {
		t.Run(compute.String(), func(t *testing.T) { testGoldenExampleGradients(t, compute) })
	}
}

func testGoldenExampleGradients(t *testing.T, compute Compute) {
	g := loadGolden(t, exampleGolden)
	m, err := FromTensors(g.cfg, g.params())
	if err != nil {
		t.Fatal(err)
	}
	visited := map[string]int{}
	res, err := m.Gradients(g.batch, GradOptions{Keep: true, Compute: compute, Visit: func(name string, _ []float32) { visited[name]++ }})
	if err != nil {
		t.Fatal(err)
	}
	want := float64(g.tensors["loss"].Data[0])
	if math.Abs(res.Loss-want) > 1e-5*math.Abs(want) {
		t.Errorf("loss %.7f, want %.7f", res.Loss, want)
	}
	var names []string
	for name := range g.tensors {
		if strings.HasPrefix(name, "grad.") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) != len(g.cfg.Inventory()) {
		t.Errorf("golden has %d gradients, inventory %d tensors", len(names), len(g.cfg.Inventory()))
	}
	for _, name := range names {
		p := strings.TrimPrefix(name, "grad.")
		got, ok := res.Grads[p]
		if !ok {
			t.Errorf("%s: no gradient", p)
			continue
		}
		if visited[p] != 1 {
			t.Errorf("%s: visited %d times, want once", p, visited[p])
		}
		checkClose(t, name, got, g.tensors[name], 1e-4)
	}
}
