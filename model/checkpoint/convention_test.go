package checkpoint

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
)

// withLinearClass returns cfg with a quantization_config naming linearClass.
func withLinearClass(cfg model.Config, linearClass string) model.Config {
	cfg.QuantizationConfig = &model.QuantizationConfig{QuantMethod: "bitnet", LinearClass: linearClass}
	return cfg
}

// setLinearClass rewrites a checkpoint's config.json with another
// linear_class ("" removes the key).
func setLinearClass(t *testing.T, dir, linearClass string) {
	t.Helper()
	cfg, err := model.ReadConfigFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QuantizationConfig.LinearClass = linearClass
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg.JSON(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func forward(t *testing.T, m *model.Model, compute model.Compute) []float32 {
	t.Helper()
	out, err := m.Forward(testBatch(t, m.Config()), model.ForwardOptions{Compute: compute})
	if err != nil {
		t.Fatal(err)
	}
	return out.Logits.Data
}

func load(t *testing.T, dir string) *model.Model {
	t.Helper()
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The same ternary codes and the same effective scale (mean|W| = 1/64,
// stored as 1/64 under autobitlinear and as 64 under bitlinear) give
// bit-identical logits on every compute path.
func TestBothConventionsGiveBitIdenticalLogits(t *testing.T) {
	cfg := tinyConfig(false)
	auto := load(t, writeSynthetic(t, withLinearClass(cfg, "autobitlinear"), Offline, 1))
	bit := load(t, writeSynthetic(t, withLinearClass(cfg, "bitlinear"), Offline, 1))
	for _, compute := range []model.Compute{model.ComputeKernels, model.ComputeFloat, model.ComputeFloat64} {
		a, b := forward(t, auto, compute), forward(t, bit, compute)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("compute %v: logits[%d] autobitlinear %v, bitlinear %v", compute, i, a[i], b[i])
			}
		}
	}
	p, _ := bit.Param("model.layers.0.mlp.down_proj.weight")
	if _, scale, conv, ok := p.Offline(); !ok || scale != 64 || conv != model.ScaleDivides {
		t.Errorf("bitlinear down_proj: scale %v, convention %v, offline %v", scale, conv, ok)
	}
}

// Reading one convention's weight_scale in the other convention's direction
// is the converter bug class the issue names: every linear is off by
// (mean|W|)² = 2^-12, and the logits move by O(1).
func TestWrongDirectionMovesLogits(t *testing.T) {
	cfg := tinyConfig(false)
	dir := writeSynthetic(t, withLinearClass(cfg, "bitlinear"), Offline, 1)
	want := forward(t, load(t, dir), model.ComputeKernels)
	setLinearClass(t, dir, "autobitlinear")
	if d := relL2(forward(t, load(t, dir), model.ComputeKernels), want); d < 0.1 {
		t.Errorf("bitlinear scales read as autobitlinear: logits relL2 %g, expected O(1)", d)
	}
}

// An offline checkpoint without linear_class is read as HF reads it: with
// BitNetQuantConfig's default, bitlinear.
func TestAbsentLinearClassIsBitLinear(t *testing.T) {
	cfg := tinyConfig(true)
	dir := writeSynthetic(t, withLinearClass(cfg, "bitlinear"), Offline, 1)
	want := forward(t, load(t, dir), model.ComputeKernels)
	setLinearClass(t, dir, "")
	m := load(t, dir)
	if m.Config().LinearClass() != "bitlinear" {
		t.Errorf("LinearClass() = %q", m.Config().LinearClass())
	}
	if d := relL2(forward(t, m, model.ComputeKernels), want); d != 0 {
		t.Errorf("absent linear_class: logits relL2 %g from bitlinear", d)
	}
}

func TestUnknownLinearClassIsAnError(t *testing.T) {
	dir := writeSynthetic(t, withLinearClass(tinyConfig(true), "autobitlinear"), Offline, 1)
	setLinearClass(t, dir, "bitlinear2")
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), `quantization_config.linear_class: expected "autobitlinear" or "bitlinear", got "bitlinear2"`) ||
		!strings.Contains(err.Error(), ConfigFile) {
		t.Errorf("Load = %v, expected an error naming the file and the field", err)
	}
}

// Saving a model loaded from an offline checkpoint writes back its own
// codes and weight_scale, bit for bit, in its own convention.
func TestSaveKeepsOfflineWeightScale(t *testing.T) {
	const q = "model.layers.1.self_attn.q_proj.weight"
	for _, linearClass := range []string{"autobitlinear", "bitlinear"} {
		src := writeSynthetic(t, withLinearClass(tinyConfig(false), linearClass), Offline, 1)
		// A scale that is not a power of two: inverting it would round.
		odd := tensorfile.BF16Bytes([]float32{0.0173})
		if err := editOne(src, scaleName(q), func(t tensorfile.Tensor) []tensorfile.Tensor {
			t.Data = odd
			return []tensorfile.Tensor{t}
		}); err != nil {
			t.Fatal(err)
		}
		m := load(t, src)
		dst := filepath.Join(t.TempDir(), "saved")
		if err := Save(m, dst, Offline, 2); err != nil {
			t.Fatal(err)
		}
		saved := load(t, dst)
		if got := saved.Config().LinearClass(); got != linearClass {
			t.Errorf("%s: saved linear_class %q", linearClass, got)
		}
		for _, p := range m.Params() {
			w, scale, conv, ok := p.Offline()
			if !ok {
				continue
			}
			sp, _ := saved.Param(p.Name())
			w2, scale2, conv2, ok2 := sp.Offline()
			if !ok2 || scale2 != scale || conv2 != conv || !bytes.Equal(w.HFPacked(), w2.HFPacked()) {
				t.Errorf("%s %s: saved scale %v (%v), loaded %v (%v); codes equal %v", linearClass, p.Name(), scale2, conv2, scale, conv, ok2 && bytes.Equal(w.HFPacked(), w2.HFPacked()))
			}
		}
		if d := relL2(forward(t, saved, model.ComputeKernels), forward(t, m, model.ComputeKernels)); d != 0 {
			t.Errorf("%s: logits after save and load differ, relL2 %g", linearClass, d)
		}
	}
}

// A quantization_config without quantization_mode is offline, as in HF; an
// online folder with such a config is told why its masters are unexpected.
func TestAbsentQuantizationModeIsOffline(t *testing.T) {
	dir := writeSynthetic(t, tinyConfig(true), Online, 1)
	cfg := withLinearClass(tinyConfig(true), "autobitlinear")
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg.JSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(dir, tinyConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	want := `model.layers.0.self_attn.q_proj.weight: BF16 [64,64] is an online master weight, but config.json's quantization_config leaves quantization_mode unset, and HF's default is "offline"`
	if r.Mode != Offline || len(r.Problems) == 0 || !strings.HasPrefix(r.Problems[0].String(), want) {
		t.Errorf("mode %s, first problem %v; want %q", r.Mode, r.Problems, want)
	}
}
