package model

import (
	"fmt"
	"math"
	"runtime"
	"testing"
)

// A streamed model regenerates each layer from its init streams when the
// layer runs and recomputes each layer's forward in the backward pass; its
// logits, loss and gradients must be bit-identical to the resident model's
// on every compute path, storage and GOMAXPROCS.
func TestStreamedMatchesResident(t *testing.T) {
	batch := tinyBatch(tinyConfig(false), 2, 9, 3)
	for _, tied := range []bool{false, true} {
		for _, storage := range []Storage{StorageF32, StorageBF16} {
			cfg := tinyConfig(tied)
			name := fmt.Sprintf("tied=%v/%v", tied, storage)
			resident, err := New(cfg, Options{Seed: 11, Storage: storage})
			if err != nil {
				t.Fatal(err)
			}
			streamed, err := New(cfg, Options{Seed: 11, Storage: storage, Streamed: true})
			if err != nil {
				t.Fatal(err)
			}
			if !streamed.Streamed() || resident.Streamed() {
				t.Fatalf("%s: Streamed() = %v for the streamed model, %v for the resident one", name, streamed.Streamed(), resident.Streamed())
			}
			if streamed.ParamCount() != resident.ParamCount() {
				t.Errorf("%s: streamed ParamCount %d, resident %d", name, streamed.ParamCount(), resident.ParamCount())
			}
			if streamed.MemoryBytes() >= resident.MemoryBytes() {
				t.Errorf("%s: streamed model holds %d bytes, the resident one %d", name, streamed.MemoryBytes(), resident.MemoryBytes())
			}
			for i, p := range resident.params {
				if d := firstBitDiff(streamed.params[i].Float32(), p.Float32()); d >= 0 {
					t.Errorf("%s: %s regenerated differs at %d", name, p.Name(), d)
				}
			}
			for _, compute := range []Compute{ComputeKernels, ComputeFloat, ComputeFloat64} {
				for _, procs := range []int{1, 2, 3} {
					old := runtime.GOMAXPROCS(procs)
					label := fmt.Sprintf("%s/%v/GOMAXPROCS=%d", name, compute, procs)
					checkSameResults(t, label, resident, streamed, batch, compute)
					runtime.GOMAXPROCS(old)
				}
			}
		}
	}
}

func checkSameResults(t *testing.T, label string, resident, streamed *Model, batch Batch, compute Compute) {
	t.Helper()
	want, err := resident.Forward(batch, ForwardOptions{Compute: compute, Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := streamed.Forward(batch, ForwardOptions{Compute: compute, Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if d := firstBitDiff(got.Logits.Data, want.Logits.Data); d >= 0 {
		t.Errorf("%s: streamed logits differ at %d: %v, resident %v", label, d, got.Logits.Data[d], want.Logits.Data[d])
	}
	for i := range want.Hidden {
		if d := firstBitDiff(got.Hidden[i].Data, want.Hidden[i].Data); d >= 0 {
			t.Errorf("%s: streamed hidden.%d differs at %d", label, i, d)
		}
	}
	wantG, err := resident.Gradients(batch, GradOptions{Compute: compute, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	gotG, err := streamed.Gradients(batch, GradOptions{Compute: compute, Keep: true})
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
		if d := firstBitDiff(gotG.Grads[name].Data, g.Data); d >= 0 {
			t.Errorf("%s: streamed gradient of %s differs at %d", label, name, d)
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

// Concurrent calls on one streamed model each borrow their own layer
// buffers, so they give the single-call results.
func TestStreamedConcurrentCalls(t *testing.T) {
	cfg := tinyConfig(false)
	m, err := New(cfg, Options{Seed: 5, Streamed: true})
	if err != nil {
		t.Fatal(err)
	}
	batch := tinyBatch(cfg, 1, 7, 4)
	want, err := m.Forward(batch, ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			got, err := m.Forward(batch, ForwardOptions{})
			if err == nil && firstBitDiff(got.Logits.Data, want.Logits.Data) >= 0 {
				err = fmt.Errorf("concurrent forward differs from the single one")
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// A layer tensor Set on a streamed model is used as set, not regenerated.
func TestStreamedSetIsKept(t *testing.T) {
	cfg := tinyConfig(false)
	resident, _ := New(cfg, Options{Seed: 2})
	streamed, _ := New(cfg, Options{Seed: 2, Streamed: true})
	name := layerName(1, slotUp)
	p, _ := resident.Param(name)
	w := p.Float32()
	w[3] += 0.5
	for _, m := range []*Model{resident, streamed} {
		q, _ := m.Param(name)
		if err := q.Set(w); err != nil {
			t.Fatal(err)
		}
	}
	batch := tinyBatch(cfg, 1, 5, 1)
	checkSameResults(t, "after Set", resident, streamed, batch, ComputeKernels)
}

func TestStreamedRefusesZero(t *testing.T) {
	_, err := New(tinyConfig(false), Options{Streamed: true, Zero: true})
	if err == nil {
		t.Fatal("New with Streamed and Zero: no error")
	}
}

func TestEstimateMemory(t *testing.T) {
	cfg := tinyConfig(false)
	resident, err := EstimateMemory(cfg, StorageAuto, 2, 8, false)
	if err != nil {
		t.Fatal(err)
	}
	streamed, err := EstimateMemory(cfg, StorageAuto, 2, 8, true)
	if err != nil {
		t.Fatal(err)
	}
	if streamed.Total() >= resident.Total() {
		t.Errorf("streamed estimate %d, resident %d: expected less", streamed.Total(), resident.Total())
	}
	if w := resident.Weights; w < 4*cfg.ParamCount() {
		t.Errorf("resident weights estimate %d, expected at least the %d bytes of float32 latent values", w, 4*cfg.ParamCount())
	}
	if _, err := EstimateMemory(cfg, StorageAuto, 0, 8, false); err == nil {
		t.Error("B=0: no error")
	}
	bad := cfg
	bad.HiddenSize = 0
	if _, err := EstimateMemory(bad, StorageAuto, 2, 8, false); err == nil {
		t.Error("hidden_size 0: no error")
	}
}

// The gradient pass of a streamed model makes every layer twice (forward,
// then recomputation and backward) except the last, which the backward
// pass takes over from the forward pass as made; the gradients are the
// resident model's.
func TestStreamedGradientsReuseLastLayer(t *testing.T) {
	cfg := tinyConfig(false)
	cfg.NumHiddenLayers = 3
	resident, err := New(cfg, Options{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	batch := tinyBatch(cfg, 2, 5, 3)
	for _, compute := range []Compute{ComputeKernels, ComputeFloat} {
		// a fresh model: a second call may find the layer it starts with
		// in the buffers the first one left
		src := &countingSource{m: resident, reads: map[string]int{}}
		m := sourcedModel(t, resident, src)
		got, err := m.Gradients(batch, GradOptions{Compute: compute, Keep: true})
		if err != nil {
			t.Fatal(err)
		}
		want, err := resident.Gradients(batch, GradOptions{Compute: compute, Keep: true})
		if err != nil {
			t.Fatal(err)
		}
		if math.Float64bits(got.Loss) != math.Float64bits(want.Loss) {
			t.Errorf("%v: loss %v, resident %v", compute, got.Loss, want.Loss)
		}
		for name, g := range want.Grads {
			if d := firstBitDiff(got.Grads[name].Data, g.Data); d >= 0 {
				t.Errorf("%v: gradient of %s differs at %d", compute, name, d)
			}
		}
		for _, spec := range cfg.Inventory() {
			if spec.Layer < 0 {
				continue
			}
			want := 2
			if spec.Layer == int(cfg.NumHiddenLayers)-1 {
				want = 1
			}
			if n := src.reads[spec.Name]; n != want {
				t.Errorf("%v: %s read %d times in one gradient pass, want %d", compute, spec.Name, n, want)
			}
		}
	}
}
