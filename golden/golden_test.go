package golden

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
)

// sharedExample is the in-repository copy of the independent example case.
var sharedExample = filepath.Join(Dir(), "shared-example-tiny-gqa.safetensors")

func TestDirHoldsCommittedCases(t *testing.T) {
	if !filepath.IsAbs(Dir()) {
		t.Fatalf("Dir() = %q, expected an absolute path", Dir())
	}
	paths, err := Discover(Dir())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[Kind]int{}
	for _, path := range paths {
		c, err := Load(path)
		if err != nil {
			t.Errorf("committed case: %v", err)
			continue
		}
		kinds[c.Kind]++
		checkInvariants(t, c)
	}
	if kinds[KindModel] < 6 || kinds[KindBitlinear] < 4 {
		t.Errorf("%s: found %d model and %d bitlinear cases, expected at least 6 and 4 (run make golden)", Dir(), kinds[KindModel], kinds[KindBitlinear])
	}
}

func TestCommittedCasesCoverTheMatrix(t *testing.T) {
	paths, err := Discover(Dir())
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, path := range paths {
		c, err := Load(path)
		if err != nil || c.Kind != KindModel {
			continue
		}
		cfg := c.Config
		switch {
		case cfg.NumKeyValueHeads == cfg.NumAttentionHeads:
			covered["MHA"] = true
		case cfg.NumKeyValueHeads == 1:
			covered["MQA"] = true
		default:
			covered["GQA"] = true
		}
		covered[fmt.Sprintf("tied=%v", cfg.TieWordEmbeddings)] = true
		covered[fmt.Sprintf("L=%d", cfg.NumHiddenLayers)] = true
		covered[fmt.Sprintf("B=%d", c.Batch.B)] = true
		if cfg.HeadDim() != 64 {
			covered["head_dim!=64"] = true
		}
		if cfg.NumAttentionHeads*cfg.HeadDim() != cfg.HiddenSize {
			covered["nh*hd!=H"] = true
		}
		if cfg.VocabSize%2 == 1 {
			covered["odd V"] = true
		}
		if c.Batch.T%2 == 1 {
			covered["odd T"] = true
		}
		if len(c.Grads) == len(c.Params) {
			covered["all grads"] = true
		}
	}
	for _, want := range []string{"MHA", "GQA", "MQA", "tied=true", "tied=false", "L=1", "L=2", "L=3", "L=4",
		"B=1", "B=2", "B=3", "head_dim!=64", "nh*hd!=H", "odd V", "odd T", "all grads"} {
		if !covered[want] {
			t.Errorf("no committed model case covers %s", want)
		}
	}
}

func TestLoadSharedExample(t *testing.T) {
	c, err := Load(sharedExample)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, c)
	// Facts stated in docs/golden-format.md.
	cfg := c.Config
	if cfg.HiddenSize != 64 || cfg.IntermediateSize != 160 || cfg.NumHiddenLayers != 2 || cfg.NumAttentionHeads != 4 ||
		cfg.NumKeyValueHeads != 2 || cfg.VocabSize != 256 || !cfg.TieWordEmbeddings {
		t.Errorf("%s: config %+v, expected H=64 I=160 L=2 nh=4 nkv=2 V=256 tied", sharedExample, cfg)
	}
	if c.Batch.B != 2 || c.Batch.T != 16 {
		t.Errorf("%s: batch %dx%d, expected 2x16", sharedExample, c.Batch.B, c.Batch.T)
	}
	if math.Abs(c.Loss-6.545922) > 1e-6 {
		t.Errorf("%s: loss %v, expected 6.545922", sharedExample, c.Loss)
	}
}

// checkInvariants checks what Load promises about a case it accepted.
func checkInvariants(t *testing.T, c *Case) {
	t.Helper()
	switch c.Kind {
	case KindModel:
		cfg := c.Config
		B, T := c.Batch.B, c.Batch.T
		if len(c.Batch.IDs) != B*T {
			t.Errorf("%s: %d ids for B=%d T=%d", c.Path, len(c.Batch.IDs), B, T)
		}
		for i, id := range c.Batch.IDs {
			if int64(id) < 0 || int64(id) >= cfg.VocabSize {
				t.Errorf("%s: id %d at %d outside vocab %d", c.Path, id, i, cfg.VocabSize)
			}
		}
		inventory := cfg.Inventory()
		if len(c.Params) != len(inventory) {
			t.Errorf("%s: %d params, expected %d", c.Path, len(c.Params), len(inventory))
		}
		for _, spec := range inventory {
			p := c.Params[spec.Name]
			if p == nil || int64(len(p.Data)) != spec.Elements() {
				t.Errorf("%s: param %s missing or wrong size", c.Path, spec.Name)
			}
			if g, ok := c.Grads[spec.Name]; ok && int64(len(g.Data)) != spec.Elements() {
				t.Errorf("%s: grad %s has %d values, expected %d", c.Path, spec.Name, len(g.Data), spec.Elements())
			}
		}
		if int64(len(c.Hidden)) != cfg.NumHiddenLayers+1 {
			t.Errorf("%s: %d hidden states, expected L+1 = %d", c.Path, len(c.Hidden), cfg.NumHiddenLayers+1)
		}
		H, V := int(cfg.HiddenSize), int(cfg.VocabSize)
		for i, h := range c.Hidden {
			checkShape(t, c.Path, fmt.Sprintf("hidden.%d", i), h, B, T, H)
		}
		checkShape(t, c.Path, "final_norm", c.FinalNorm, B, T, H)
		checkShape(t, c.Path, "logits", c.Logits, B, T, V)
		if !(c.Loss >= 0) || math.IsInf(c.Loss, 0) {
			t.Errorf("%s: loss %v, expected a non-negative finite cross-entropy", c.Path, c.Loss)
		}
	case KindBitlinear:
		N, in, out := c.X.Shape[0], c.X.Shape[1], c.Weight.Shape[0]
		checkShape(t, c.Path, "weight", c.Weight, out, in)
		checkShape(t, c.Path, "y", c.Y, N, out)
		if c.GradY != nil {
			checkShape(t, c.Path, "grad_y", c.GradY, N, out)
			checkShape(t, c.Path, "grad.x", c.GradX, N, in)
			checkShape(t, c.Path, "grad.weight", c.GradWeight, out, in)
		}
	default:
		t.Errorf("%s: kind %q", c.Path, c.Kind)
	}
}

func checkShape(t *testing.T, path, name string, x *model.Tensor, shape ...int) {
	t.Helper()
	if x == nil || !slices.Equal(x.Shape, shape) || len(x.Data) != model.Elements(shape) {
		t.Errorf("%s: %s is not %s", path, name, model.ShapeString(shape))
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b.safetensors", "a.safetensors", "notes.txt", "c.safetensors.bak"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "d.safetensors"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Discover(dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "b.safetensors")}
	if !slices.Equal(got, want) {
		t.Errorf("Discover = %q, expected %q", got, want)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := Discover(dir, missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Discover(missing dir): error %v, expected one naming %s", err, missing)
	}
}

// testFile is a golden file under construction: tests start from a valid
// case and break one thing.
type testFile struct {
	metadata map[string]string
	tensors  []tensorfile.Tensor
}

// Tiny model: H=8, I=12, L=1, nh=2 over nkv=1 (hd=4), V=11, tied; B=2, T=3.
const testConfig = `{"hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2,
"num_key_value_heads": 1, "vocab_size": 11, "max_position_embeddings": 16, "rms_norm_eps": 1e-05,
"rope_theta": 10000.0, "tie_word_embeddings": true, "hidden_act": "relu2",
"quantization_config": {"quantization_mode": "online"}}`

func validModelFile(t testing.TB) *testFile {
	cfg, err := model.ParseConfig([]byte(testConfig), "testConfig")
	if err != nil {
		t.Fatal(err)
	}
	const B, T = 2, 3
	H, V := cfg.HiddenSize, cfg.VocabSize
	f := &testFile{metadata: map[string]string{"format": FormatV1, "case": "model", "config": testConfig, "generator": "golden_test.go"}}
	f.setInt64("input_ids", []int64{B, T}, []int64{0, 10, 3, 7, 1, 5})
	for _, spec := range cfg.Inventory() {
		f.setFloat32(spec.Name, spec.Shape)
	}
	f.setFloat32("logits", []int64{B, T, V})
	for i := int64(0); i <= cfg.NumHiddenLayers; i++ {
		f.setFloat32(fmt.Sprintf("hidden.%d", i), []int64{B, T, H})
	}
	f.setFloat32("final_norm", []int64{B, T, H})
	f.setFloat32("loss", []int64{})
	f.poke("loss", 0, 2.5)
	for _, spec := range cfg.Inventory() {
		f.setFloat32("grad."+spec.Name, spec.Shape)
	}
	return f
}

// validModelFileV2 is validModelFile in v2: every trace point and the
// gradient of every node, with a complete spread.
func validModelFileV2(t testing.TB) *testFile {
	f := validModelFile(t)
	f.metadata["format"] = FormatV2
	cfg, err := model.ParseConfig([]byte(testConfig), "testConfig")
	if err != nil {
		t.Fatal(err)
	}
	const B, T = 2, 3
	nodes := map[string][]int64{"logits": {B, T, cfg.VocabSize}, "final_norm": {B, T, cfg.HiddenSize}}
	for i := int64(0); i <= cfg.NumHiddenLayers; i++ {
		nodes[HiddenName(int(i))] = []int64{B, T, cfg.HiddenSize}
	}
	for i := 0; i < int(cfg.NumHiddenLayers); i++ {
		for _, p := range TracePoints {
			f.setFloat32(TraceName(i, p.Name), []int64{B, T, p.Width(cfg)})
			nodes[TraceName(i, p.Name)] = []int64{B, T, p.Width(cfg)}
		}
	}
	for name, shape := range nodes {
		f.setFloat32("grad."+name, shape)
	}
	spread := map[string]float64{}
	for _, k := range SpreadKeys(&Case{Config: cfg, Hidden: make([]*model.Tensor, cfg.NumHiddenLayers+1)}) {
		spread[k] = 1e-3
	}
	raw, err := json.Marshal(spread)
	if err != nil {
		t.Fatal(err)
	}
	f.metadata["spread"] = string(raw)
	return f
}

func validBitlinearFile() *testFile {
	f := &testFile{metadata: map[string]string{"format": FormatV1, "case": "bitlinear", "generator": "golden_test.go"}}
	f.setFloat32("x", []int64{3, 5})
	f.setFloat32("weight", []int64{4, 5})
	f.setFloat32("y", []int64{3, 4})
	f.setFloat32("grad_y", []int64{3, 4})
	f.setFloat32("grad.x", []int64{3, 5})
	f.setFloat32("grad.weight", []int64{4, 5})
	return f
}

// setFloat32 adds (or replaces) an F32 tensor filled with small distinct
// finite values.
func (f *testFile) setFloat32(name string, shape []int64) {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%17)*0.25 - 2
	}
	f.set(tensorfile.Tensor{Name: name, DType: "F32", Shape: shape, Data: tensorfile.Float32Bytes(v)})
}

func (f *testFile) setInt64(name string, shape []int64, v []int64) {
	f.set(tensorfile.Tensor{Name: name, DType: "I64", Shape: shape, Data: tensorfile.Int64Bytes(v)})
}

func (f *testFile) set(t tensorfile.Tensor) {
	for i := range f.tensors {
		if f.tensors[i].Name == t.Name {
			f.tensors[i] = t
			return
		}
	}
	f.tensors = append(f.tensors, t)
}

func (f *testFile) remove(name string) {
	f.tensors = slices.DeleteFunc(f.tensors, func(t tensorfile.Tensor) bool { return t.Name == name })
}

func (f *testFile) tensor(name string) *tensorfile.Tensor {
	for i := range f.tensors {
		if f.tensors[i].Name == name {
			return &f.tensors[i]
		}
	}
	panic("test file has no tensor " + name)
}

// poke overwrites element i of an F32 tensor.
func (f *testFile) poke(name string, i int, v float32) {
	binary.LittleEndian.PutUint32(f.tensor(name).Data[4*i:], math.Float32bits(v))
}

func (f *testFile) write(t testing.TB, path string) string {
	t.Helper()
	if err := tensorfile.Write(path, f.metadata, f.tensors); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadValidTestFiles(t *testing.T) {
	dir := t.TempDir()
	c, err := Load(validModelFile(t).write(t, filepath.Join(dir, "model.safetensors")))
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, c)
	if c.Name != "model" || c.Generator != "golden_test.go" || len(c.Grads) != len(c.Params) {
		t.Errorf("model case: name %q generator %q, %d grads for %d params", c.Name, c.Generator, len(c.Grads), len(c.Params))
	}
	if want := []int32{0, 10, 3, 7, 1, 5}; !slices.Equal(c.Batch.IDs, want) {
		t.Errorf("ids %v, expected %v", c.Batch.IDs, want)
	}

	noGrads := validModelFile(t)
	for _, tensor := range slices.Clone(noGrads.tensors) {
		if strings.HasPrefix(tensor.Name, "grad.") {
			noGrads.remove(tensor.Name)
		}
	}
	delete(noGrads.metadata, "case") // "model" is the default
	c, err = Load(noGrads.write(t, filepath.Join(dir, "nograds.safetensors")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != KindModel || len(c.Grads) != 0 {
		t.Errorf("case without grads: kind %q, %d grads, expected model with none", c.Kind, len(c.Grads))
	}

	c, err = Load(validModelFileV2(t).write(t, filepath.Join(dir, "model-v2.safetensors")))
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, c)
	if c.Version != 2 || len(c.NodeGrads) != len(c.Nodes) || c.Nodes["trace.0.act"] == nil || c.Spread["grad.model.norm.weight"] != 1e-3 {
		t.Errorf("v2 case: version %d, %d nodes, %d node gradients, spread %v", c.Version, len(c.Nodes), len(c.NodeGrads), c.Spread)
	}
	f := validModelFileV2(t)
	delete(f.metadata, "spread")
	if c, err = Load(f.write(t, filepath.Join(dir, "model-v2-nospread.safetensors"))); err != nil || c.Spread != nil {
		t.Errorf("v2 case without spread: err %v, spread %v; expected it to load with no spread", err, c.Spread)
	}

	c, err = Load(validBitlinearFile().write(t, filepath.Join(dir, "bitlinear.safetensors")))
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, c)
	if c.GradWeight == nil {
		t.Error("bitlinear case: grad.weight not loaded")
	}
}

func TestLoadRejectsBrokenFiles(t *testing.T) {
	tests := []struct {
		name    string
		file    func(t testing.TB) *testFile
		corrupt func(f *testFile)
		// want lists substrings the error must contain besides the path.
		want []string
	}{
		{"wrong format version", validModelFile, func(f *testFile) { f.metadata["format"] = "bitnet-golden/v3" },
			[]string{`metadata "format"`, `"bitnet-golden/v3"`, `expected "bitnet-golden/v2" or "bitnet-golden/v1"`}},
		{"v2 without a trace point", validModelFileV2, func(f *testFile) { f.remove("trace.0.ffn_sub_norm") },
			[]string{`tensor "trace.0.ffn_sub_norm": missing`, "F32 [2,3,12]"}},
		{"v2 trace point of the wrong width", validModelFileV2, func(f *testFile) { f.setFloat32("trace.0.k", []int64{2, 3, 8}) },
			[]string{`tensor "trace.0.k"`, "expected shape [2,3,4]", "got [2,3,8]"}},
		{"v2 without a node gradient", validModelFileV2, func(f *testFile) { f.remove("grad.trace.0.attn") },
			[]string{`tensor "grad.trace.0.attn": missing`}},
		{"v2 without a parameter gradient", validModelFileV2, func(f *testFile) { f.remove("grad.model.norm.weight") },
			[]string{`tensor "grad.model.norm.weight": missing`, "every parameter"}},
		{"v2 trace past the last layer", validModelFileV2, func(f *testFile) { f.setFloat32("trace.1.q", []int64{2, 3, 8}) },
			[]string{`unexpected tensor(s) "trace.1.q"`}},
		{"v2 spread not JSON", validModelFileV2, func(f *testFile) { f.metadata["spread"] = "{logits" },
			[]string{`metadata "spread"`, "JSON object"}},
		{"v2 spread missing a key", validModelFileV2, func(f *testFile) {
			f.metadata["spread"] = strings.Replace(f.metadata["spread"], `"loss"`, `"lost"`, 1)
		}, []string{`metadata "spread"`, `key "loss" missing`}},
		{"v2 spread with an unknown key", validModelFileV2, func(f *testFile) {
			f.metadata["spread"] = strings.Replace(f.metadata["spread"], "{", `{"trace.0.q": 1,`, 1)
		}, []string{`metadata "spread"`, `unexpected key "trace.0.q"`}},
		{"v2 negative spread", validModelFileV2, func(f *testFile) {
			f.metadata["spread"] = strings.Replace(f.metadata["spread"], `"logits":0.001`, `"logits":-1`, 1)
		}, []string{`metadata "spread"`, `key "logits" is -1`}},
		{"missing format", validModelFile, func(f *testFile) { delete(f.metadata, "format") },
			[]string{`metadata "format": missing`}},
		{"missing generator", validModelFile, func(f *testFile) { delete(f.metadata, "generator") },
			[]string{`metadata "generator"`}},
		{"unknown case kind", validModelFile, func(f *testFile) { f.metadata["case"] = "attention" },
			[]string{`metadata "case"`, `"attention"`, `"bitlinear"`}},
		{"missing config", validModelFile, func(f *testFile) { delete(f.metadata, "config") },
			[]string{`metadata "config": missing`}},
		{"config not JSON", validModelFile, func(f *testFile) { f.metadata["config"] = "{hidden" },
			[]string{"metadata config", "invalid JSON"}},
		{"invalid config", validModelFile, func(f *testFile) {
			f.metadata["config"] = strings.Replace(testConfig, `"num_attention_heads": 2`, `"num_attention_heads": 3`, 1)
		}, []string{"metadata config", "num_attention_heads"}},
		{"offline config", validModelFile, func(f *testFile) {
			f.metadata["config"] = strings.Replace(testConfig, `"online"`, `"offline"`, 1)
		}, []string{"quantization_mode", `expected "online"`, `got "offline"`}},
		{"config claims too many layers", validModelFile, func(f *testFile) {
			f.metadata["config"] = strings.Replace(testConfig, `"num_hidden_layers": 1`, `"num_hidden_layers": 2000000000`, 1)
		}, []string{"num_hidden_layers 2000000000", "the file has"}},
		{"missing logits", validModelFile, func(f *testFile) { f.remove("logits") },
			[]string{`tensor "logits": missing`, "F32 [2,3,11]"}},
		{"missing hidden state", validModelFile, func(f *testFile) { f.remove("hidden.1") },
			[]string{`tensor "hidden.1": missing`, "[2,3,8]"}},
		{"missing parameter", validModelFile, func(f *testFile) { f.remove("model.layers.0.mlp.up_proj.weight") },
			[]string{`tensor "model.layers.0.mlp.up_proj.weight": missing`, "[12,8]"}},
		{"wrong logits shape", validModelFile, func(f *testFile) { f.setFloat32("logits", []int64{2, 3, 12}) },
			[]string{`tensor "logits"`, "expected shape [2,3,11]", "got [2,3,12]"}},
		{"wrong parameter shape", validModelFile, func(f *testFile) { f.setFloat32("model.layers.0.self_attn.k_proj.weight", []int64{8, 8}) },
			[]string{`tensor "model.layers.0.self_attn.k_proj.weight"`, "expected shape [4,8]", "got [8,8]"}},
		{"wrong grad shape", validModelFile, func(f *testFile) { f.setFloat32("grad.model.norm.weight", []int64{9}) },
			[]string{`tensor "grad.model.norm.weight"`, "expected shape [8]", "got [9]"}},
		{"loss not a scalar", validModelFile, func(f *testFile) { f.setFloat32("loss", []int64{1}) },
			[]string{`tensor "loss"`, "expected shape []", "got [1]"}},
		{"wrong dtype", validModelFile, func(f *testFile) {
			f.set(tensorfile.Tensor{Name: "final_norm", DType: "BF16", Shape: []int64{2, 3, 8}, Data: make([]byte, 2*48)})
		}, []string{`tensor "final_norm"`, "expected dtype F32", "got BF16"}},
		{"input_ids not I64", validModelFile, func(f *testFile) {
			f.set(tensorfile.Tensor{Name: "input_ids", DType: "F32", Shape: []int64{2, 3}, Data: make([]byte, 4*6)})
		}, []string{`tensor "input_ids"`, "expected dtype I64", "got F32"}},
		{"input_ids rank 1", validModelFile, func(f *testFile) { f.setInt64("input_ids", []int64{6}, []int64{0, 1, 2, 3, 4, 5}) },
			[]string{`tensor "input_ids"`, "expected shape [B,T]", "got [6]"}},
		{"single token", validModelFile, func(f *testFile) { f.setInt64("input_ids", []int64{2, 1}, []int64{0, 1}) },
			[]string{`tensor "input_ids"`, "T >= 2"}},
		{"longer than max positions", validModelFile, func(f *testFile) { f.setInt64("input_ids", []int64{1, 17}, make([]int64, 17)) },
			[]string{`tensor "input_ids"`, "T = 17", "max_position_embeddings 16"}},
		{"id out of range", validModelFile, func(f *testFile) { f.setInt64("input_ids", []int64{2, 3}, []int64{0, 1, 2, 3, 11, 5}) },
			[]string{`tensor "input_ids"`, "id at [1,1] is 11", "[0, 11)"}},
		{"negative id", validModelFile, func(f *testFile) { f.setInt64("input_ids", []int64{2, 3}, []int64{0, -1, 2, 3, 4, 5}) },
			[]string{`tensor "input_ids"`, "id at [0,1] is -1"}},
		{"NaN", validModelFile, func(f *testFile) { f.poke("hidden.1", 13, float32(math.NaN())) },
			[]string{`tensor "hidden.1"`, "NaN at index [0,1,5] (flat 13)"}},
		{"Inf", validModelFile, func(f *testFile) { f.poke("grad.model.embed_tokens.weight", 9, float32(math.Inf(-1))) },
			[]string{`tensor "grad.model.embed_tokens.weight"`, "-Inf at index [1,1] (flat 9)"}},
		{"negative loss", validModelFile, func(f *testFile) { f.poke("loss", 0, -0.5) },
			[]string{`tensor "loss"`, "-0.5", "non-negative"}},
		{"Inf loss", validModelFile, func(f *testFile) { f.poke("loss", 0, float32(math.Inf(1))) },
			[]string{`tensor "loss"`, "+Inf at index []"}},
		{"lm_head in a tied model", validModelFile, func(f *testFile) { f.setFloat32("lm_head.weight", []int64{11, 8}) },
			[]string{`unexpected tensor(s) "lm_head.weight"`}},
		{"hidden state past the last layer", validModelFile, func(f *testFile) { f.setFloat32("hidden.2", []int64{2, 3, 8}) },
			[]string{`unexpected tensor(s) "hidden.2"`}},
		{"grad of an unknown parameter", validModelFile, func(f *testFile) { f.setFloat32("grad.model.layers.1.mlp.up_proj.weight", []int64{12, 8}) },
			[]string{`unexpected tensor(s) "grad.model.layers.1.mlp.up_proj.weight"`}},
		{"bitlinear missing y", func(testing.TB) *testFile { return validBitlinearFile() }, func(f *testFile) { f.remove("y") },
			[]string{`tensor "y": missing`, "F32 [3,4]"}},
		{"bitlinear weight in mismatch", func(testing.TB) *testFile { return validBitlinearFile() }, func(f *testFile) { f.setFloat32("weight", []int64{4, 6}) },
			[]string{`tensor "weight"`, "expected shape [4,5]", "got [4,6]"}},
		{"bitlinear partial gradients", func(testing.TB) *testFile { return validBitlinearFile() }, func(f *testFile) { f.remove("grad.x") },
			[]string{"bitlinear gradients", "got only grad_y, grad.weight"}},
		{"bitlinear NaN", func(testing.TB) *testFile { return validBitlinearFile() }, func(f *testFile) { f.poke("x", 7, float32(math.NaN())) },
			[]string{`tensor "x"`, "NaN at index [1,2] (flat 7)"}},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.file(t)
			tc.corrupt(f)
			path := f.write(t, filepath.Join(dir, fmt.Sprintf("broken-%d.safetensors", i)))
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted the file (kind %q), expected an error containing %q", c.Kind, tc.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path+": ") {
				t.Errorf("error %q does not start with the file path", msg)
			}
			for _, want := range tc.want {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestLoadRejectsNonSafetensors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.safetensors")
	if err := os.WriteFile(path, []byte("not a safetensors file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(garbage): error %v, expected one naming %s", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.safetensors")); err == nil {
		t.Error("Load(absent file) succeeded")
	}
}
