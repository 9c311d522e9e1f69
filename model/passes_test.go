package model

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/tritter-ai/conformance/kernels"
)

// suitePasses are the passes the forward suite runs on one subject: the
// base batch, its tail changed (causality), its last row alone (batch
// independence), GOMAXPROCS 2 and 1, and a short batch on every kernel
// path; plus, here, a traced pass, a jittered one and the float paths.
func suitePasses(cfg Config, B, T int, seed uint64) []Pass {
	base := tinyBatch(cfg, B, T, seed)
	changed := Batch{B: B, T: T, IDs: append([]int32(nil), base.IDs...)}
	for b := range B {
		for j := T/2 + 1; j < T; j++ {
			changed.IDs[b*T+j] = int32((int(changed.IDs[b*T+j]) + 1 + j) % int(cfg.VocabSize))
		}
	}
	alone := Batch{B: 1, T: T, IDs: base.IDs[(B-1)*T:]}
	short := Batch{B: 1, T: 2, IDs: base.IDs[:2]}
	passes := []Pass{
		{Batch: base},
		{Batch: changed},
		{Batch: alone},
		{Batch: base, Procs: 2},
		{Batch: base, Procs: 1},
		{Batch: short},
		{Batch: base, Options: ForwardOptions{Trace: true}},
		{Batch: base, Options: ForwardOptions{Compute: ComputeFloat, Trace: true}},
		{Batch: alone, Options: ForwardOptions{Compute: ComputeFloat}, Procs: 1},
		{Batch: base, Options: ForwardOptions{Jitter: 7}},
		{Batch: short, Options: ForwardOptions{Compute: ComputeFloat64}},
	}
	for _, path := range kernels.SupportedPaths() {
		passes = append(passes, Pass{Batch: short, Path: path}, Pass{Batch: base, Path: path, Procs: 1})
	}
	return passes
}

// oneByOne runs each pass alone with Forward, under its GOMAXPROCS and
// kernel path.
func oneByOne(t testing.TB, m *Model, passes []Pass) []*Output {
	t.Helper()
	procs, path := runtime.GOMAXPROCS(0), kernels.ActivePath()
	defer func() {
		runtime.GOMAXPROCS(procs)
		if err := kernels.SetPath(path); err != nil {
			t.Fatal(err)
		}
	}()
	outs := make([]*Output, len(passes))
	for k, p := range passes {
		runtime.GOMAXPROCS(procs)
		if p.Procs > 0 {
			runtime.GOMAXPROCS(p.Procs)
		}
		pathK := path
		if p.Path != "" {
			pathK = p.Path
		}
		if err := kernels.SetPath(pathK); err != nil {
			t.Fatal(err)
		}
		out, err := m.Forward(p.Batch, p.Options)
		if err != nil {
			t.Fatalf("pass %d: %v", k, err)
		}
		outs[k] = out
	}
	return outs
}

// checkSameOutputs compares every logit, final-norm value and traced
// hidden state of got and want bit for bit.
func checkSameOutputs(t testing.TB, label string, passes []Pass, got, want []*Output) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d outputs, want %d", label, len(got), len(want))
	}
	for k := range want {
		what := fmt.Sprintf("%s: pass %d ([%d,%d] %v procs=%d path=%q trace=%v jitter=%d)", label, k,
			passes[k].Batch.B, passes[k].Batch.T, passes[k].Options.Compute, passes[k].Procs, passes[k].Path, passes[k].Options.Trace, passes[k].Options.Jitter)
		if d := firstBitDiff(got[k].Logits.Data, want[k].Logits.Data); d >= 0 {
			t.Errorf("%s: logits differ at %d", what, d)
		}
		if d := firstBitDiff(got[k].FinalNorm.Data, want[k].FinalNorm.Data); d >= 0 {
			t.Errorf("%s: final norm differs at %d", what, d)
		}
		if len(got[k].Hidden) != len(want[k].Hidden) {
			t.Errorf("%s: %d hidden states, want %d", what, len(got[k].Hidden), len(want[k].Hidden))
			continue
		}
		for i := range want[k].Hidden {
			if d := firstBitDiff(got[k].Hidden[i].Data, want[k].Hidden[i].Data); d >= 0 {
				t.Errorf("%s: hidden.%d differs at %d", what, i, d)
			}
		}
	}
}

// Layer-major passes give, bit for bit, what each pass gives alone: on the
// tiny presets (tied and untied, MHA, GQA and MQA), resident and streamed,
// f32 and bf16 storage, both compute paths, GOMAXPROCS 1 and 2 and every
// kernel path. The streamed model is also compared with the resident one.
func TestForwardPassesMatchOneByOne(t *testing.T) {
	for _, preset := range []string{"tiny-mha-tied", "tiny-gqa-untied", "tiny-mqa-tied"} {
		cfg, err := LoadConfig("../conformance/presets/" + preset + ".json")
		if err != nil {
			t.Fatal(err)
		}
		for _, storage := range []Storage{StorageF32, StorageBF16} {
			passes := suitePasses(cfg, 2, 11, 5)
			resident, err := New(cfg, Options{Seed: 3, Storage: storage})
			if err != nil {
				t.Fatal(err)
			}
			streamed, err := New(cfg, Options{Seed: 3, Storage: storage, Streamed: true})
			if err != nil {
				t.Fatal(err)
			}
			want := oneByOne(t, resident, passes)
			procs, path := runtime.GOMAXPROCS(0), kernels.ActivePath()
			for _, m := range []*Model{resident, streamed} {
				label := fmt.Sprintf("%s/%v/streamed=%v", preset, storage, m.Streamed())
				got, err := m.ForwardPasses(passes, nil)
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				checkSameOutputs(t, label, passes, got, want)
				if runtime.GOMAXPROCS(0) != procs || kernels.ActivePath() != path {
					t.Errorf("%s: GOMAXPROCS %d and path %s after ForwardPasses, want %d and %s", label, runtime.GOMAXPROCS(0), kernels.ActivePath(), procs, path)
				}
			}
			checkSameOutputs(t, preset+"/streamed one by one", passes, oneByOne(t, streamed, passes), want)
		}
	}
}

// countingSource serves a resident model's layer tensors to a streamed
// one and counts how often each is read.
type countingSource struct {
	m       *Model
	failAt  string // a tensor whose reads fail
	panicAt string // a tensor whose reads panic
	mu      sync.Mutex
	reads   map[string]int
}

func (s *countingSource) Offline(name string) (*kernels.Ternary, float32, ScaleConvention, bool, error) {
	return nil, 0, 0, false, nil
}

func (s *countingSource) Latent(name string, dst []float32) error {
	s.mu.Lock()
	s.reads[name]++
	s.mu.Unlock()
	if name == s.failAt {
		return fmt.Errorf("%s: injected read error", name)
	}
	if name == s.panicAt {
		panic(name + ": injected panic")
	}
	p, _ := s.m.Param(name)
	copy(dst, p.Float32())
	return nil
}

// sourcedModel is a streamed model that reads its layers from resident
// through a counting source; the other tensors are copied.
func sourcedModel(t *testing.T, resident *Model, src *countingSource) *Model {
	t.Helper()
	m, err := New(resident.Config(), Options{Streamed: true, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resident.Params() {
		if p.Spec().Layer < 0 {
			q, _ := m.Param(p.Name())
			if err := q.Set(p.Float32()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

// Each layer tensor is read from the source once for all the passes, and
// the results are those of the resident model.
func TestForwardPassesMakeEachLayerOnce(t *testing.T) {
	cfg := tinyConfig(false)
	resident, err := New(cfg, Options{Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{m: resident, reads: map[string]int{}}
	m := sourcedModel(t, resident, src)
	passes := suitePasses(cfg, 2, 7, 1)
	var layered int
	for _, p := range passes {
		if p.Options.Compute != ComputeFloat64 {
			layered++
		}
	}
	var progress []int
	got, err := m.ForwardPasses(passes, func(done, layers int) {
		if layers != int(cfg.NumHiddenLayers) {
			t.Errorf("progress: %d layers, want %d", layers, cfg.NumHiddenLayers)
		}
		progress = append(progress, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(progress) != "[1 2]" {
		t.Errorf("progress %v, want [1 2]", progress)
	}
	checkSameOutputs(t, "sourced", passes, got, oneByOne(t, resident, passes))
	for _, spec := range cfg.Inventory() {
		if spec.Layer < 0 {
			continue
		}
		// the float64 pass reads each tensor once more
		if n := src.reads[spec.Name]; n != 2 {
			t.Errorf("%s read %d times for %d layer-major passes and one float64 pass, want 2", spec.Name, n, layered)
		}
	}
}

// A layer that cannot be made is every pass's error, named, and no pass
// is left behind.
func TestForwardPassesLayerError(t *testing.T) {
	cfg := tinyConfig(true)
	resident, err := New(cfg, Options{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{m: resident, reads: map[string]int{}, failAt: layerName(1, slotGate)}
	m := sourcedModel(t, resident, src)
	goroutines := runtime.NumGoroutine()
	passes := []Pass{{Batch: tinyBatch(cfg, 1, 4, 1)}, {Batch: tinyBatch(cfg, 2, 3, 2), Procs: 1}}
	_, err = m.ForwardPasses(passes, nil)
	if err == nil || !strings.Contains(err.Error(), "injected read error") {
		t.Fatalf("error %v, want the source's read error", err)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after the failed passes, %d before", n, goroutines)
	}
	if _, err := m.ForwardPasses([]Pass{{Batch: Batch{B: 1, T: 1, IDs: []int32{-1}}}}, nil); err == nil || !strings.Contains(err.Error(), "pass 0") {
		t.Errorf("bad token: error %v, want one naming pass 0", err)
	}
	if _, err := m.ForwardPasses([]Pass{{Batch: tinyBatch(cfg, 1, 2, 1), Path: "no-such-path"}}, nil); err == nil {
		t.Error("unknown kernel path: no error")
	}
}

// A source that panics while a layer is made ends every pass with an
// error naming the layer, and leaves no goroutine behind.
func TestForwardPassesLayerPanic(t *testing.T) {
	cfg := tinyConfig(true)
	resident, err := New(cfg, Options{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{m: resident, reads: map[string]int{}, panicAt: layerName(1, slotGate)}
	m := sourcedModel(t, resident, src)
	goroutines := runtime.NumGoroutine()
	passes := []Pass{{Batch: tinyBatch(cfg, 1, 4, 1)}, {Batch: tinyBatch(cfg, 2, 3, 2), Procs: 1}}
	_, err = m.ForwardPasses(passes, nil)
	if err == nil || !strings.Contains(err.Error(), "making layer 1") || !strings.Contains(err.Error(), "injected panic") {
		t.Fatalf("error %v, want one naming layer 1 and the panic", err)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after the failed passes, %d before", n, goroutines)
	}
}

// On 2B-4T, streamed, the forward suite's passes give layer-major what
// they give one by one (CONFORMANCE_FULL_SCALE=1; about 5 minutes).
func TestFullScaleForwardPasses(t *testing.T) {
	if os.Getenv(fullScaleEnv) != "1" || testing.Short() {
		t.Skipf("set %s=1 to run full-scale tests", fullScaleEnv)
	}
	cfg, err := LoadConfig("../conformance/presets/bitnet-b1.58-2b-4t.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, Options{Seed: 1, Streamed: true})
	if err != nil {
		t.Fatal(err)
	}
	var passes []Pass
	for _, p := range suitePasses(cfg, 2, 128, 1) {
		if p.Options.Compute == ComputeKernels && p.Options.Jitter == 0 && !p.Options.Trace && (p.Path != kernels.Generic || p.Batch.T == 2) {
			passes = append(passes, p)
		}
	}
	ph := newPhase(t)
	got, err := m.ForwardPasses(passes, nil)
	if err != nil {
		t.Fatal(err)
	}
	ph.done(fmt.Sprintf("%d passes layer by layer", len(passes)))
	want := oneByOne(t, m, passes)
	ph.done(fmt.Sprintf("%d passes one by one", len(passes)))
	checkSameOutputs(t, "2B-4T streamed", passes, got, want)
}
