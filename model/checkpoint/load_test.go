package checkpoint

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/model"
)

func testBatch(t *testing.T, cfg model.Config) model.Batch {
	t.Helper()
	rows := make([][]int32, 2)
	for b := range rows {
		for i := 0; i < 12; i++ {
			rows[b] = append(rows[b], int32((37*i+101*b+5)%int(cfg.VocabSize)))
		}
	}
	batch, err := model.NewBatch(rows)
	if err != nil {
		t.Fatal(err)
	}
	return batch
}

func logits(t *testing.T, m *model.Model) []float32 {
	t.Helper()
	out, err := m.Forward(testBatch(t, m.Config()), model.ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out.Logits.Data
}

func relL2(got, want []float32) float64 {
	var diff, norm float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		diff += d * d
		norm += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(diff / norm)
}

func saveAndLoad(t *testing.T, m *model.Model, mode string, shards int, opts ...Option) *model.Model {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "saved")
	if err := Save(m, dir, mode, shards); err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(dir, m.Config())
	if err != nil {
		t.Fatal(err)
	}
	if r.Err() != nil || r.Mode != mode || len(r.Files) != shards {
		t.Fatalf("saved checkpoint: mode %s, %d files, %v", r.Mode, len(r.Files), r.Err())
	}
	loaded, err := Load(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return loaded
}

func TestSaveLoadOnlineIsExact(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tied    bool
		storage model.Storage
		shards  int
	}{
		{"f32 single file", true, model.StorageF32, 1},
		{"f32 sharded untied", false, model.StorageF32, 3},
		{"bf16 sharded", true, model.StorageBF16, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := model.New(tinyConfig(tc.tied), model.Options{Seed: 7, Storage: tc.storage})
			if err != nil {
				t.Fatal(err)
			}
			want := logits(t, m)
			got := logits(t, saveAndLoad(t, m, Online, tc.shards, WithStorage(tc.storage)))
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("logit %d: %v after save and load, %v before", i, got[i], want[i])
				}
			}
		})
	}
}

func TestSaveOfflineFromOnline(t *testing.T) {
	for _, shards := range []int{1, 4} {
		m, err := model.New(tinyConfig(false), model.Options{Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		want := logits(t, m)
		offline := saveAndLoad(t, m, Offline, shards)
		if rel := relL2(logits(t, offline), want); rel > 3e-3 {
			t.Errorf("%d shards: offline logits differ from online by rel L2 %.3g", shards, rel)
		} else {
			t.Logf("%d shards: offline vs online logits rel L2 %.3g", shards, rel)
		}
		// The ternary values survive a second offline save exactly.
		again := saveAndLoad(t, offline, Offline, 1)
		for _, p := range again.Params() {
			if p.Spec().Kind != model.KindLinear {
				continue
			}
			q, _ := offline.Param(p.Name())
			a, b := p.Float32(), q.Float32()
			for i := range a {
				if (a[i] > 0) != (b[i] > 0) || (a[i] < 0) != (b[i] < 0) {
					t.Fatalf("%s[%d]: ternary sign changed from %v to %v", p.Name(), i, b[i], a[i])
				}
			}
		}
	}
}

func TestLoadSynthetic(t *testing.T) {
	for _, mode := range []string{Online, Offline} {
		cfg := tinyConfig(true)
		dir := writeSynthetic(t, cfg, mode, 2)
		m, err := Load(dir)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if got := logits(t, m); len(got) != 2*12*int(cfg.VocabSize) || math.IsNaN(float64(got[0])) {
			t.Errorf("%s: %d logits, first %v", mode, len(got), got[0])
		}
		if mode == Offline {
			p, _ := m.Param("model.layers.0.self_attn.q_proj.weight")
			scale := float32(syntheticMeanAbs)
			for _, v := range p.Float32() {
				if v != 0 && v != scale && v != -scale {
					t.Fatalf("offline weight %v, want 0 or ±%v", v, scale)
				}
			}
		}
	}
}

func TestLoadErrorsNameTensorAndFile(t *testing.T) {
	cfg := tinyConfig(true)
	const down = "model.layers.1.mlp.down_proj.weight"

	dir := writeSynthetic(t, cfg, Online, 1)
	if err := ReshapeTensor(dir, down, []int64{64, 64}); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), down+": shape [64,64], expected [64,160] (model.safetensors)") {
		t.Errorf("Load error %v", err)
	}

	dir = writeSynthetic(t, cfg, Offline, 1)
	if err := EditTensors(dir, func(_ string, tensors []tfTensor) []tfTensor {
		for _, t := range tensors {
			if t.Name == down {
				t.Data[5] = 0xFF // code 3 is not a ternary value
			}
		}
		return tensors
	}); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, SingleFile)+`: tensor "`+down+`"`) || !strings.Contains(err.Error(), "= 3") {
		t.Errorf("Load error %v", err)
	}

	dir = writeSynthetic(t, cfg, Offline, 1)
	if err := EditTensors(dir, func(_ string, tensors []tfTensor) []tfTensor {
		for _, t := range tensors {
			if t.Name == down+"_scale" {
				copy(t.Data, []byte{0, 0}) // weight_scale 0
			}
		}
		return tensors
	}); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir)
	if err == nil || !strings.Contains(err.Error(), `tensor "`+down+`_scale"`) || !strings.Contains(err.Error(), "weight_scale") {
		t.Errorf("Load error %v", err)
	}
}

func TestSaveReplacesTheOtherForm(t *testing.T) {
	cfg := tinyConfig(true)
	m, err := model.New(cfg, model.Options{Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "saved")
	if err := WriteSynthetic(dir, cfg, Offline, 1); err != nil {
		t.Fatal(err)
	}
	if err := Save(m, dir, Online, 2); err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(dir, cfg)
	if err != nil || r.Err() != nil || r.Mode != Online || len(r.Files) != 2 {
		t.Fatalf("after a sharded save over a single file: %v, %v, %+v", err, r.Err(), r)
	}
	if err := Save(m, dir, Online, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, IndexFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("index left behind by a single-file save: %v", err)
	}
}
