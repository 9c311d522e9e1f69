package verify

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// testConfig is a small model bitnet.cpp can run: widths multiples of 128,
// head_dim = hidden/heads, GQA 2:1.
func testConfig(tied bool, linearClass string) model.Config {
	return model.Config{HiddenSize: 128, IntermediateSize: 256, NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2,
		VocabSize: 96, MaxPositionEmbeddings: 64, RopeTheta: 500000, RMSNormEps: 1e-5, HiddenAct: "relu2", TieWordEmbeddings: tied,
		QuantizationConfig: &model.QuantizationConfig{QuantMethod: "bitnet", LinearClass: linearClass}}
}

// checkpointDir writes a random model of cfg with checkpoint.Save in mode
// and returns the folder.
func checkpointDir(t *testing.T, cfg model.Config, mode string, seed uint64) string {
	t.Helper()
	m, err := model.New(cfg, model.Options{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "hf")
	if err := checkpoint.Save(m, dir, mode, 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

// verifyFile writes a GGUF of the checkpoint in dir with opts and returns
// every finding.
func verifyFile(t *testing.T, dir string, src gguf.Source, opts gguf.BitNetOptions) []Finding {
	t.Helper()
	ref, err := LoadReference(dir)
	if err != nil {
		t.Fatal(err)
	}
	if src == nil {
		src = SourceOf(ref.Model)
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := gguf.WriteBitNet(path, ref.Config, src, opts); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := New(f, ref, Options{})
	fs, err := v.Verify()
	if err != nil {
		t.Fatalf("%s: %v", opts.Defect, err)
	}
	if s, ok, _ := v.LogitsMeasured(); ok {
		t.Logf("logits relL2 %.3g, spread %.3g, bound %.3g", s.RelL2, s.Spread, s.Bound)
	}
	return fs
}

func checksOf(fs []Finding) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range fs {
		if !seen[f.Check] {
			seen[f.Check] = true
			out = append(out, f.Check)
		}
	}
	sort.Strings(out)
	return out
}

// TestFaithfulFiles: correct files of several shapes (GQA and MQA, tied and
// untied, both linear_class conventions, online and offline checkpoints
// written by checkpoint.Save and checkpoint.WriteSynthetic) have no
// conversion error, and exactly the bitnet.cpp findings their shapes imply.
func TestFaithfulFiles(t *testing.T) {
	mqa := model.Config{HiddenSize: 64, IntermediateSize: 192, NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 1, HeadDimension: 32,
		VocabSize: 80, MaxPositionEmbeddings: 32, RopeTheta: 10000, RMSNormEps: 1e-6, HiddenAct: "relu2", TieWordEmbeddings: true}
	wide := testConfig(true, "autobitlinear")
	wide.HiddenSize, wide.IntermediateSize, wide.NumAttentionHeads, wide.NumKeyValueHeads, wide.NumHiddenLayers = 256, 384, 2, 1, 1
	cases := []struct {
		name    string
		cfg     model.Config
		mode    string
		runtime []string // the bitnet.cpp findings expected
		synth   bool
	}{
		{"gqa-tied-online", testConfig(true, "autobitlinear"), checkpoint.Online, nil, false},
		{"gqa-untied-online", testConfig(false, "autobitlinear"), checkpoint.Online, []string{CheckUntiedHead}, false},
		{"gqa-tied-offline-autobitlinear", testConfig(true, "autobitlinear"), checkpoint.Offline, nil, false},
		{"gqa-untied-offline-bitlinear", testConfig(false, "bitlinear"), checkpoint.Offline, []string{CheckUntiedHead}, false},
		{"mqa-wide-tied-offline-bitlinear", func() model.Config { c := wide; c.QuantizationConfig.LinearClass = "bitlinear"; return c }(), checkpoint.Offline, nil, false},
		{"mqa-head-dim-online", mqa, checkpoint.Online, []string{CheckHeadDim, CheckRowWidths, CheckSubNormSize}, false},
		{"synthetic-offline-bitlinear", testConfig(true, "bitlinear"), checkpoint.Offline, nil, true},
		{"synthetic-online", testConfig(false, "autobitlinear"), checkpoint.Online, []string{CheckUntiedHead}, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var dir string
			if c.synth {
				dir = filepath.Join(t.TempDir(), "hf")
				cfg := c.cfg
				cfg.QuantizationConfig = &model.QuantizationConfig{QuantMethod: "bitnet", LinearClass: c.cfg.QuantizationConfig.LinearClass, QuantizationMode: c.mode}
				if err := checkpoint.WriteSynthetic(dir, cfg, c.mode, 1); err != nil {
					t.Fatal(err)
				}
			} else {
				dir = checkpointDir(t, c.cfg, c.mode, uint64(i+1))
			}
			fs := verifyFile(t, dir, nil, gguf.BitNetOptions{})
			t.Logf("findings:\n%s", Lines(fs))
			if errs := ConversionErrors(fs); len(errs) > 0 {
				t.Fatalf("faithful file: %d conversion errors:\n%s", len(errs), Lines(errs))
			}
			got := checksOf(fs)
			want := append([]string(nil), c.runtime...)
			sort.Strings(want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("bitnet.cpp findings %v, want %v:\n%s", got, want, Lines(fs))
			}
		})
	}
}

// TestDefects: every broken kind WriteBitNet makes fails the checks of its
// defect, named, and no check it does not touch. "may" lists checks whose
// outcome is legitimately either way: a single flipped code, or Q/K rows
// permuted within a head, move the logits by about as much as rounding.
func TestDefects(t *testing.T) {
	dir := checkpointDir(t, testConfig(true, "autobitlinear"), checkpoint.Online, 7)
	cases := []struct {
		defect gguf.Defect
		must   []string
		may    []string
		says   string // in the message of the first finding of must[0]
	}{
		{gguf.InvertedScale, []string{CheckScales, CheckLogits}, nil, "scale inverted"},
		{gguf.PermutedQK, []string{CheckCodes}, []string{CheckLogits}, "llama's Q/K permutation"},
		{gguf.SequentialLayout, []string{CheckLayout, CheckCodes, CheckLogits}, nil, "sequential 4-per-byte (MSB first) layout"},
		{gguf.ARMLayout, []string{CheckLayout, CheckCodes, CheckLogits}, nil, "ARM NEON 64/16 layout"},
		{gguf.RowInterleavedLayout, []string{CheckLayout, CheckCodes, CheckLogits}, nil, "non-ACT_PARALLEL 4-row interleaved layout"},
		{gguf.WrongKeyPrefix, []string{CheckMetadata}, nil, "under another prefix"},
		{gguf.OldArch, []string{CheckMetadata}, nil, "SiLU"},
		{gguf.Untied, []string{CheckInventory}, nil, "tie_word_embeddings=true"},
		{gguf.FlippedCode, []string{CheckCodes}, []string{CheckLogits}, "blk.0.attn_v.weight[1,2]"},
		{gguf.ZeroTensor, []string{CheckZeroTensors, CheckCodes, CheckLogits}, nil, "all-zero ternary tensor"},
	}
	for _, c := range cases {
		t.Run(c.defect.String(), func(t *testing.T) {
			fs := verifyFile(t, dir, nil, gguf.BitNetOptions{Defect: c.defect})
			t.Logf("findings:\n%s", Lines(fs))
			byCheck := map[string][]Finding{}
			for _, f := range fs {
				byCheck[f.Check] = append(byCheck[f.Check], f)
			}
			for _, m := range c.must {
				if len(byCheck[m]) == 0 {
					t.Errorf("check %q did not fail:\n%s", m, Lines(fs))
				}
			}
			allowed := map[string]bool{}
			for _, m := range append(c.must, c.may...) {
				allowed[m] = true
			}
			for check, f := range byCheck {
				if !allowed[check] {
					t.Errorf("check %q failed too:\n%s", check, Lines(f))
				}
			}
			if first := byCheck[c.must[0]]; len(first) > 0 && !strings.Contains(first[0].Message, c.says) {
				t.Errorf("%s finding does not say %q: %s", c.must[0], c.says, first[0].Message)
			}
		})
	}
}

// TestFlippedCodeNamesElement: the flipped code is named by tensor, row,
// column, and both values.
func TestFlippedCodeNamesElement(t *testing.T) {
	dir := checkpointDir(t, testConfig(true, "autobitlinear"), checkpoint.Online, 3)
	fs := verifyFile(t, dir, nil, gguf.BitNetOptions{Defect: gguf.FlippedCode, DefectTensor: "blk.1.ffn_up.weight"})
	var codes []Finding
	for _, f := range fs {
		if f.Check == CheckCodes {
			codes = append(codes, f)
		}
	}
	if len(codes) != 1 {
		t.Fatalf("%d code findings, want 1:\n%s", len(codes), Lines(fs))
	}
	f := codes[0]
	if f.Tensor != "blk.1.ffn_up.weight" || f.Row != 1 || f.Col != 2 || f.Expected == f.Actual || !strings.Contains(f.Message, "gguf=") || !strings.Contains(f.Message, "hf=") {
		t.Errorf("finding %+v", f)
	}
}

// bitlinearAsConverter converts an offline bitlinear checkpoint as
// convert-hf-to-gguf-bitnet.py does: weight_scale becomes the I2_S scale
// whatever linear_class says.
type bitlinearAsConverter struct{ m *model.Model }

func (s bitlinearAsConverter) Ternary(name string) ([]int8, float32, error) {
	p, _ := s.m.Param(name)
	w, ws, _, ok := p.Offline()
	if !ok {
		return nil, 0, fmt.Errorf("%s: not offline", name)
	}
	return w.Unpack(), ws, nil
}

func (s bitlinearAsConverter) Floats(name string) ([]float32, error) {
	return SourceOf(s.m).Floats(name)
}

// TestBitlinearConvertedAsAutobitlinear: the converter's bug on a
// bitlinear checkpoint (linear_class never read) is an inverted scale.
func TestBitlinearConvertedAsAutobitlinear(t *testing.T) {
	dir := checkpointDir(t, testConfig(true, "bitlinear"), checkpoint.Offline, 5)
	m, err := checkpoint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	fs := verifyFile(t, dir, bitlinearAsConverter{m}, gguf.BitNetOptions{})
	if got := checksOf(fs); fmt.Sprint(got) != fmt.Sprint([]string{CheckLogits, CheckScales}) {
		t.Fatalf("checks %v, want [logits scales]:\n%s", got, Lines(fs))
	}
	for _, f := range fs {
		if f.Check == CheckScales && !strings.Contains(f.Message, "scale inverted") {
			t.Errorf("not named inverted: %s", f.Message)
		}
	}
}

// TestFloatOutTypes: the converter's F32/F16 output is a faithful
// conversion that bitnet.cpp runs without activation quantization.
func TestFloatOutTypes(t *testing.T) {
	dir := checkpointDir(t, testConfig(true, "autobitlinear"), checkpoint.Online, 9)
	for _, out := range []string{"f32", "f16"} {
		fs := verifyFile(t, dir, nil, gguf.BitNetOptions{OutType: out})
		if got := checksOf(fs); fmt.Sprint(got) != fmt.Sprint([]string{CheckFloatLinears}) {
			t.Errorf("%s: checks %v, want [%s]:\n%s", out, got, CheckFloatLinears, Lines(fs))
		}
	}
}

// TestMetadataMessages: a wrong value names the key, both values and the
// HF field; bitnet-25 is accepted.
func TestMetadataMessages(t *testing.T) {
	ref, _, path := faithfulFile(t, 11)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	kvs := append([]gguf.KV(nil), f.KVs...)
	var tensors []gguf.WriteTensor
	for _, info := range f.Tensors {
		info := info
		tensors = append(tensors, gguf.WriteTensor{Name: info.Name, Ne: info.Ne, Type: info.Type, Data: func() ([]byte, error) { return f.Raw(info.Name) }})
	}
	rewrite := func(change func(kvs []gguf.KV) []gguf.KV) *gguf.File {
		p := filepath.Join(t.TempDir(), "edited.gguf")
		if err := gguf.Write(p, change(append([]gguf.KV(nil), kvs...)), tensors); err != nil {
			t.Fatal(err)
		}
		g, err := gguf.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		return g
	}
	set := func(key string, v gguf.Value) func([]gguf.KV) []gguf.KV {
		return func(kvs []gguf.KV) []gguf.KV {
			for i := range kvs {
				if kvs[i].Key == key {
					kvs[i].Value = v
				}
			}
			return kvs
		}
	}
	g := rewrite(set("bitnet-b1.58.block_count", gguf.U32(3)))
	fs := New(g, ref, Options{}).Metadata()
	if len(fs) != 1 || fs[0].Message != "bitnet-b1.58.block_count: gguf=3, hf num_hidden_layers=2" {
		t.Errorf("block_count: %v", fs)
	}
	g = rewrite(set("bitnet-b1.58.rope.freq_base", gguf.Str("500000")))
	if fs := New(g, ref, Options{}).Metadata(); len(fs) != 1 || !strings.Contains(fs[0].Message, "type string, expected f32") {
		t.Errorf("freq_base type: %v", fs)
	}
	g = rewrite(func(kvs []gguf.KV) []gguf.KV {
		var out []gguf.KV
		for _, kv := range kvs {
			if kv.Key != "bitnet-b1.58.attention.layer_norm_rms_epsilon" {
				out = append(out, kv)
			}
		}
		return out
	})
	if fs := New(g, ref, Options{}).Metadata(); len(fs) != 1 || !strings.Contains(fs[0].Message, "layer_norm_rms_epsilon: missing, hf rms_norm_eps=1e-05") {
		t.Errorf("missing epsilon: %v", fs)
	}
	g = rewrite(func(kvs []gguf.KV) []gguf.KV {
		for i := range kvs {
			if kvs[i].Key == "general.architecture" {
				kvs[i].Value = gguf.Str(gguf.Arch25)
			}
			kvs[i].Key = strings.Replace(kvs[i].Key, gguf.ArchB158+".", gguf.Arch25+".", 1)
		}
		return kvs
	})
	if fs := New(g, ref, Options{}).Metadata(); len(fs) != 0 {
		t.Errorf("bitnet-25: %v", fs)
	}
	lines := New(f, ref, Options{}).MetadataLines()
	if len(lines) == 0 || lines[1].Text != "bitnet-b1.58.block_count: gguf=2, hf num_hidden_layers=2" || !lines[1].OK {
		t.Errorf("lines %v", lines)
	}
}

// TestHostileInput: a truncated or garbage file is an error from Open, and
// a verifier over a file missing tensors reports findings without
// panicking.
func TestHostileInput(t *testing.T) {
	_, dir, path := faithfulFile(t, 13)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short.gguf")
	if err := os.WriteFile(short, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := File(short, dir, Options{}); err == nil {
		t.Error("a truncated file verified")
	}
	// Another model's file: every shape differs.
	other := testConfig(true, "autobitlinear")
	other.HiddenSize, other.NumAttentionHeads, other.NumKeyValueHeads = 256, 2, 1
	om, err := model.New(other, model.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	op := filepath.Join(t.TempDir(), "other.gguf")
	if err := gguf.WriteBitNet(op, other, SourceOf(om), gguf.BitNetOptions{}); err != nil {
		t.Fatal(err)
	}
	fs, err := File(op, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{CheckMetadata, CheckInventory, CheckCodes, CheckLogits} {
		found := false
		for _, f := range fs {
			found = found || f.Check == want
		}
		if !found {
			t.Errorf("no %s finding for another model's file:\n%s", want, Lines(fs))
		}
	}
}

// TestRandomTensorData: a file whose tensor bytes are random (codes 3, NaN
// and negative scales, garbage norms) is reported, never a panic.
func TestRandomTensorData(t *testing.T) {
	_, dir, path := convertedFile(t, testConfig(false, "autobitlinear"), 17)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	start := f.DataStart
	f.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for seed := uint64(1); seed <= 3; seed++ {
		state := seed
		for i := start; i < int64(len(data)); i++ {
			state = state*6364136223846793005 + 1442695040888963407
			data[i] = byte(state >> 56)
		}
		bad := filepath.Join(t.TempDir(), "random.gguf")
		if err := os.WriteFile(bad, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fs, err := File(bad, dir, Options{})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if len(ConversionErrors(fs)) == 0 {
			t.Errorf("seed %d: random tensor data passed", seed)
		}
	}
}

// faithfulFile writes a tied online autobitlinear checkpoint of testConfig
// from seed, converts it with WriteBitNet, and returns its reference, the
// checkpoint's folder and the GGUF's path.
func faithfulFile(t *testing.T, seed uint64) (*Reference, string, string) {
	t.Helper()
	return convertedFile(t, testConfig(true, "autobitlinear"), seed)
}

// convertedFile writes an online checkpoint of cfg from seed, converts it
// with WriteBitNet, and returns its reference, the checkpoint's folder and
// the GGUF's path.
func convertedFile(t *testing.T, cfg model.Config, seed uint64) (*Reference, string, string) {
	t.Helper()
	dir := checkpointDir(t, cfg, checkpoint.Online, seed)
	ref, err := LoadReference(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := gguf.WriteBitNet(path, ref.Config, SourceOf(ref.Model), gguf.BitNetOptions{}); err != nil {
		t.Fatal(err)
	}
	return ref, dir, path
}
