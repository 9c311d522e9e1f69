package checkpoint

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
)

// A checkpoint loaded layer-streamed reads each layer from the mapped files
// when it runs; its tensors, logits, hidden states, loss and gradients must
// be bit-identical to the resident load's in both layouts, both offline
// conventions, one file or shards, either storage, on every compute path
// and GOMAXPROCS.
func TestStreamedLoadMatchesResident(t *testing.T) {
	cases := []struct {
		mode, linearClass string
		tied              bool
		shards            int
	}{
		{Online, "", false, 1},
		{Online, "", true, 3},
		{Offline, "autobitlinear", false, 1},
		{Offline, "bitlinear", true, 3},
	}
	for _, c := range cases {
		cfg := tinyConfig(c.tied)
		if c.linearClass != "" {
			cfg = withLinearClass(cfg, c.linearClass)
		}
		src, err := model.New(cfg, model.Options{Seed: 17})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "ckpt")
		if err := Save(src, dir, c.mode, c.shards); err != nil {
			t.Fatal(err)
		}
		for _, storage := range []model.Storage{model.StorageF32, model.StorageBF16} {
			name := fmt.Sprintf("%s %s tied=%v shards=%d %v", c.mode, c.linearClass, c.tied, c.shards, storage)
			resident, err := Load(dir, WithStorage(storage))
			if err != nil {
				t.Fatal(err)
			}
			streamed, err := Load(dir, WithStorage(storage), Streamed())
			if err != nil {
				t.Fatal(err)
			}
			if !streamed.Streamed() || resident.Streamed() {
				t.Fatalf("%s: Streamed() = %v streamed, %v resident", name, streamed.Streamed(), resident.Streamed())
			}
			if got, want := streamed.MemoryBytes(), resident.MemoryBytes(); got >= want {
				t.Errorf("%s: streamed model holds %d bytes, resident %d: expected less", name, got, want)
			}
			checkSameTensors(t, name, resident, streamed)
			batch := testBatch(t, cfg)
			for _, compute := range []model.Compute{model.ComputeKernels, model.ComputeFloat, model.ComputeFloat64} {
				for _, procs := range []int{1, 2} {
					old := runtime.GOMAXPROCS(procs)
					checkSameRun(t, fmt.Sprintf("%s %v GOMAXPROCS=%d", name, compute, procs), resident, streamed, batch, compute)
					runtime.GOMAXPROCS(old)
				}
			}
		}
	}
}

// checkSameTensors compares every parameter's values and, for offline
// linears, codes, weight_scale and convention.
func checkSameTensors(t *testing.T, name string, resident, streamed *model.Model) {
	t.Helper()
	for _, p := range resident.Params() {
		q, _ := streamed.Param(p.Name())
		if i := firstBitDiff(q.Float32(), p.Float32()); i >= 0 {
			t.Errorf("%s: %s: streamed values differ from resident at %d", name, p.Name(), i)
		}
		w, s, conv, ok := p.Offline()
		w2, s2, conv2, ok2 := q.Offline()
		if ok != ok2 || (ok && (!bytes.Equal(w.HFPacked(), w2.HFPacked()) || math.Float32bits(s) != math.Float32bits(s2) || conv != conv2)) {
			t.Errorf("%s: %s: streamed Offline() = (ok %v, scale %v, %v), resident (ok %v, scale %v, %v), or the codes differ", name, p.Name(), ok2, s2, conv2, ok, s, conv)
		}
	}
}

func checkSameRun(t *testing.T, label string, resident, streamed *model.Model, batch model.Batch, compute model.Compute) {
	t.Helper()
	want, err := resident.Forward(batch, model.ForwardOptions{Compute: compute, Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := streamed.Forward(batch, model.ForwardOptions{Compute: compute, Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if i := firstBitDiff(got.Logits.Data, want.Logits.Data); i >= 0 {
		t.Errorf("%s: streamed logits differ at %d: %v, resident %v", label, i, got.Logits.Data[i], want.Logits.Data[i])
	}
	for l := range want.Hidden {
		if i := firstBitDiff(got.Hidden[l].Data, want.Hidden[l].Data); i >= 0 {
			t.Errorf("%s: streamed hidden.%d differs at %d", label, l, i)
		}
	}
	wantG, err := resident.Gradients(batch, model.GradOptions{Compute: compute, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	gotG, err := streamed.Gradients(batch, model.GradOptions{Compute: compute, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	if math.Float64bits(gotG.Loss) != math.Float64bits(wantG.Loss) {
		t.Errorf("%s: streamed loss %v, resident %v", label, gotG.Loss, wantG.Loss)
	}
	if len(gotG.Grads) != len(wantG.Grads) {
		t.Errorf("%s: streamed model has %d gradients, resident %d", label, len(gotG.Grads), len(wantG.Grads))
	}
	for name, g := range wantG.Grads {
		if i := firstBitDiff(gotG.Grads[name].Data, g.Data); i >= 0 {
			t.Errorf("%s: streamed gradient of %s differs at %d", label, name, i)
		}
	}
}

// firstBitDiff is the first index where a and b differ bitwise, or -1.
func firstBitDiff(a, b []float32) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// A bad weight_scale fails a streamed Load as it fails a resident one; a bad
// ternary code, read only when its layer runs, is that forward's error,
// naming the file and tensor.
func TestStreamedLoadErrors(t *testing.T) {
	cfg := withLinearClass(tinyConfig(false), "autobitlinear")
	m, err := model.New(cfg, model.Options{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	const target = "model.layers.1.mlp.down_proj.weight"

	dir := filepath.Join(t.TempDir(), "scale")
	if err := Save(m, dir, Offline, 1); err != nil {
		t.Fatal(err)
	}
	editLinears(t, dir, func(name string) bool { return name == scaleName(target) }, func(t *tensorfile.Tensor) {
		clear(t.Data) // 0 in any float dtype
	})
	for _, opts := range [][]Option{nil, {Streamed()}} {
		_, err := Load(dir, opts...)
		if err == nil || !strings.Contains(err.Error(), scaleName(target)) || !strings.Contains(err.Error(), "weight_scale") {
			t.Errorf("Load(%d options) with weight_scale 0: error %v, expected one naming %s", len(opts), err, scaleName(target))
		}
	}

	dir = filepath.Join(t.TempDir(), "code")
	if err := Save(m, dir, Offline, 1); err != nil {
		t.Fatal(err)
	}
	editLinears(t, dir, func(name string) bool { return name == target }, func(t *tensorfile.Tensor) {
		t.Data[5] = 0xFF // code 3 in every 2-bit field
	})
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), target) {
		t.Errorf("resident Load with a code 3: error %v, expected one naming %s", err, target)
	}
	streamed, err := Load(dir, Streamed())
	if err != nil {
		t.Fatalf("streamed Load checks codes when their layer runs, got %v", err)
	}
	for _, compute := range []model.Compute{model.ComputeKernels, model.ComputeFloat64} {
		_, err = streamed.Forward(testBatch(t, cfg), model.ForwardOptions{Compute: compute})
		if err == nil || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), "model.safetensors") {
			t.Errorf("%v forward of a streamed checkpoint with a code 3: error %v, expected one naming the file and %s", compute, err, target)
		}
	}
}
