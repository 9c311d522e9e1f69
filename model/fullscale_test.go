package model

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"testing"
	"time"
)

// Full-scale tests build the official 2B-4T architecture with random weights.
// They run only with CONFORMANCE_FULL_SCALE=1 (minutes, about 6-16 GiB);
// measure peak RSS with /usr/bin/time -v go test ...
const fullScaleEnv = "CONFORMANCE_FULL_SCALE"

// fullScalePresetEnv picks another preset from conformance/presets, for
// example tritter-7b.
const fullScalePresetEnv = "CONFORMANCE_FULL_SCALE_PRESET"

func fullScaleModel(t *testing.T) *Model {
	t.Helper()
	if os.Getenv(fullScaleEnv) != "1" || testing.Short() {
		t.Skipf("set %s=1 to run full-scale tests", fullScaleEnv)
	}
	preset := os.Getenv(fullScalePresetEnv)
	if preset == "" {
		preset = "bitnet-b1.58-2b-4t"
	}
	cfg, err := LoadConfig("../conformance/presets/" + preset + ".json")
	if err != nil {
		t.Fatal(err)
	}
	ph := newPhase(t)
	m, err := New(cfg, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ph.done("New")
	t.Logf("%d params, %.2f GiB", m.ParamCount(), float64(m.MemoryBytes())/(1<<30))
	return m
}

// phase logs wall and CPU time since the last call.
type phase struct {
	t     *testing.T
	start time.Time
	cpu   float64
}

func newPhase(t *testing.T) *phase { return &phase{t, time.Now(), cpuSeconds()} }

func (p *phase) done(what string) {
	p.t.Helper()
	cpu := cpuSeconds()
	p.t.Logf("%s: wall %.2fs, cpu %.2fs", what, time.Since(p.start).Seconds(), cpu-p.cpu)
	p.start, p.cpu = time.Now(), cpu
}

func fullScaleBatch(cfg Config) Batch {
	const B, T = 2, 128
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32((i*7919 + 13) % int(cfg.VocabSize))
	}
	return Batch{B: B, T: T, IDs: ids}
}

func TestFullScaleForward(t *testing.T) {
	m := fullScaleModel(t)
	b := fullScaleBatch(m.Config())
	ph := newPhase(t)
	if err := m.prepareTernary(); err != nil {
		t.Fatal(err)
	}
	ph.done("quantize+pack")
	t.Logf("model now %.2f GiB", float64(m.MemoryBytes())/(1<<30))
	out, err := m.Forward(b, ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ph.done(fmt.Sprintf("Forward [2,128] kernels, GOMAXPROCS %d", runtime.GOMAXPROCS(0)))
	for i, v := range out.Logits.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logits[%d] = %v", i, v)
		}
	}
	loss, _ := CrossEntropy(out.Logits, b)
	t.Logf("loss %.4f (ln V = %.4f)", loss, math.Log(float64(m.Config().VocabSize)))

	old := runtime.GOMAXPROCS(1)
	one, err := m.Forward(b, ForwardOptions{})
	runtime.GOMAXPROCS(old)
	if err != nil {
		t.Fatal(err)
	}
	ph.done("Forward [2,128] kernels, GOMAXPROCS 1")
	for i, v := range one.Logits.Data {
		if v != out.Logits.Data[i] {
			t.Fatalf("logits[%d]: GOMAXPROCS 1 gives %v, GOMAXPROCS %d gives %v", i, v, old, out.Logits.Data[i])
		}
	}
}

func TestFullScaleGradients(t *testing.T) {
	m := fullScaleModel(t)
	b := fullScaleBatch(m.Config())
	ph := newPhase(t)
	var count int
	var sumSq float64
	res, err := m.Gradients(b, GradOptions{Visit: func(name string, g []float32) {
		count++
		for i := 0; i < len(g); i += 97 { // a sample keeps the check cheap
			sumSq += float64(g[i]) * float64(g[i])
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ph.done("Gradients [2,128]")
	t.Logf("loss %.4f, %d tensors visited, sampled |grad| %.4g", res.Loss, count, math.Sqrt(sumSq))
	if !(sumSq > 0) || math.IsInf(sumSq, 0) {
		t.Errorf("sampled squared gradient norm %v", sumSq)
	}
	if count != len(m.Params()) {
		t.Errorf("visited %d tensors, want %d", count, len(m.Params()))
	}
}
