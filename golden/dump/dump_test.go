// Package dump_test runs the harness on cases written by the dumper
// (python3 -m golden.toolkit.dump) from PyTorch modules: the reference module
// (golden/toolkit/reference.py's math as HF-named nn.Modules,
// golden/toolkit/examples.py) must pass every check, and the module with
// each example bug of the catalog (golden/toolkit/bugs.py) must fail first at
// the op and layer it breaks. The tests need Debian's torch (/usr/bin/python3 with torch) and
// skip, saying so, where it is missing.
package dump_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/tritter-ai/conformance/conformance/numerics"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
)

// python is the interpreter with torch: Debian's python3-torch, or the one
// DUMP_PYTHON names.
var python = func() string {
	if p := os.Getenv("DUMP_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}()

// repoRoot is the repository root, where python3 -m golden.toolkit.* runs.
func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// toolkit is python -B -m golden.toolkit.<module> args..., run from the
// repository root.
func toolkit(t *testing.T, module string, args ...string) *exec.Cmd {
	cmd := exec.Command(python, append([]string{"-B", "-m", "golden.toolkit." + module}, args...)...)
	cmd.Dir = repoRoot(t)
	return cmd
}

var (
	torchOnce sync.Once
	torchErr  string
)

// requireTorch skips the test unless python can import torch.
func requireTorch(t *testing.T) {
	t.Helper()
	torchOnce.Do(func() {
		out, err := exec.Command(python, "-c", "import torch").CombinedOutput()
		if err != nil {
			torchErr = strings.TrimSpace(string(out))
			if torchErr == "" {
				torchErr = err.Error()
			}
		}
	})
	if torchErr != "" {
		t.Skipf("needs %s with torch (apt-get install python3-torch): %s", python, lastLine(torchErr))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

var (
	casesOnce sync.Once
	casesDir  string
	casesErr  error
	casesOut  string
)

// dumpedCases writes every example case once per test binary
// (python3 -m golden.toolkit.examples, seed 1 or DUMP_SEED) and returns the
// folder.
func dumpedCases(t *testing.T) string {
	t.Helper()
	requireTorch(t)
	casesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "golden-dump-")
		if err != nil {
			casesErr = err
			return
		}
		args := []string{"--out", dir}
		if seed := os.Getenv("DUMP_SEED"); seed != "" { // another draw of weights and ids
			args = append(args, "--seed", seed)
		}
		cmd := toolkit(t, "examples", args...)
		out, err := cmd.CombinedOutput()
		casesDir, casesErr, casesOut = dir, err, string(out)
	})
	if casesErr != nil {
		t.Fatalf("golden.toolkit.examples: %v\n%s", casesErr, casesOut)
	}
	return casesDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if casesDir != "" {
		os.RemoveAll(casesDir)
	}
	os.Exit(code)
}

// evaluate loads a dumped case and runs on it every check the golden and
// gradient suites run, in computation order (forward ops, backward ops, end
// to end): numerics.CaseChecks.
func evaluate(t *testing.T, path string) (*golden.Case, []numerics.Result) {
	t.Helper()
	c, err := golden.Load(path)
	if err != nil {
		t.Fatalf("golden.Load: %v", err)
	}
	results, err := numerics.Evaluate(c, numerics.ModelTarget, numerics.CaseChecks(c, numerics.ModelTarget), model.ComputeKernels)
	if err != nil {
		t.Fatalf("EvaluateCase: %v", err)
	}
	return c, results
}

// The dumper's files are v2 cases the golden reader accepts, with every
// trace point and node gradient and no spread.
func TestDumpedFilesAreV2(t *testing.T) {
	dir := dumpedCases(t)
	paths, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no dumped cases in %s (%v)", dir, err)
	}
	for _, path := range paths {
		c, err := golden.Load(path)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(path), err)
			continue
		}
		if c.Version != 2 {
			t.Errorf("%s: version %d, expected 2", c.Name, c.Version)
		}
		if c.Spread != nil {
			t.Errorf("%s: has a spread; a dumped file cannot measure one", c.Name)
		}
		L := int(c.Config.NumHiddenLayers)
		for i := 0; i < L; i++ {
			for _, p := range golden.TracePoints {
				name := golden.TraceName(i, p.Name)
				if c.Nodes[name] == nil || c.NodeGrads[name] == nil {
					t.Errorf("%s: %s or its gradient missing", c.Name, name)
				}
			}
		}
		if !strings.Contains(c.Generator, "golden.toolkit.examples.BitNetForCausalLM") || !strings.Contains(c.Generator, "golden.toolkit.dump") {
			t.Errorf("%s: generator %q does not name the dumper and the module class", c.Name, c.Generator)
		}
	}
}

// The reference module's dumps, tied and untied, pass every check.
func TestReferenceModulePasses(t *testing.T) {
	dir := dumpedCases(t)
	for _, name := range []string{"reference-tied", "reference-untied"} {
		t.Run(name, func(t *testing.T) {
			_, results := evaluate(t, filepath.Join(dir, name+".safetensors"))
			if len(results) == 0 {
				t.Fatal("no checks ran")
			}
			for _, r := range results {
				if !r.Passed() {
					t.Errorf("failed: %s", r)
				}
			}
			t.Logf("%d checks passed", len(results))
		})
	}
}

// The module with each example bug fails, and the first failing check in
// computation order names the op and the layer the bug breaks.
func TestBrokenModulesFailAtTheirOp(t *testing.T) {
	dir := dumpedCases(t)
	for _, tc := range []struct {
		bug    string // the bugs.py catalog name, also the file name
		op     string // the first failing check's Op starts with this
		tensor string // and it compares this golden tensor
	}{
		// RoPE is inside the attention op: golden q,k,v → trace.0.attn.
		{"interleaved-rope", "attention (RoPE, causal softmax)", "trace.0.attn"},
		{"no-attn-sub-norm", "attn_sub_norm", "trace.0.attn_sub_norm"},
		{"layernorm-input", "input_layernorm", "trace.0.attn_norm"},
		{"silu", "relu²(gate)·up", "trace.0.act"},
		{"act-quant-per-tensor", "q_proj", "trace.0.q"},
	} {
		t.Run(tc.bug, func(t *testing.T) {
			_, results := evaluate(t, filepath.Join(dir, tc.bug+".safetensors"))
			r := numerics.FirstFailure(results)
			if r == nil {
				t.Fatalf("every one of %d checks passed; the harness missed the departure", len(results))
			}
			c := r.Check
			if c.Layer != 0 || !strings.HasPrefix(c.Op, tc.op) || c.Tensor != tc.tensor ||
				!strings.HasPrefix(c.Name, "layer 0 "+tc.op) || !strings.HasSuffix(c.Name, "→ "+tc.tensor) {
				t.Errorf("first failing check is %q (layer %d, op %q, tensor %s), expected layer 0, op %q…, tensor %s\n%s",
					c.Name, c.Layer, c.Op, c.Tensor, tc.op, tc.tensor, r)
			} else {
				t.Logf("first failure: %s", r)
			}
		})
	}
}

// A module laid out differently is refused, naming what is missing and
// what is extra, and the command line exits 2 with no traceback.
func TestLayoutMismatchIsReported(t *testing.T) {
	dir := dumpedCases(t)
	data, err := os.ReadFile(filepath.Join(dir, "layout.json"))
	if err != nil {
		t.Fatal(err)
	}
	var layout map[string]struct {
		Error          *string
		Missing, Extra []string
	}
	if err := json.Unmarshal(data, &layout); err != nil {
		t.Fatal(err)
	}
	want := map[string][2][]string{
		"MissingAttnSubNorm": {{"model.layers.{0,1}.self_attn.attn_sub_norm"}, {}},
		"ExtraQNorm":         {{}, {"model.layers.{0,1}.self_attn.q_norm"}},
	}
	for name, w := range want {
		got, ok := layout[name]
		if !ok || got.Error == nil {
			t.Errorf("%s: dumped without a layout error", name)
			continue
		}
		if strings.Join(got.Missing, ";") != strings.Join(w[0], ";") || strings.Join(got.Extra, ";") != strings.Join(w[1], ";") {
			t.Errorf("%s: missing %q extra %q, expected missing %q extra %q", name, got.Missing, got.Extra, w[0], w[1])
		}
	}

	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, []byte(`{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "tie_word_embeddings": true, "hidden_act": "relu2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "x.safetensors")
	cmd := toolkit(t, "dump", "--module", "golden.toolkit.examples:ExtraQNorm", "--config", cfg, "--out", out)
	msg, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("golden.toolkit.dump on ExtraQNorm: %v, expected exit status 2\n%s", err, msg)
	}
	for _, want := range []string{"layout differs from HF BitNetForCausalLM", "extra:   model.layers.{0,1}.self_attn.q_norm (RMSNorm, 16 parameters)"} {
		if !strings.Contains(string(msg), want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(string(msg), "Traceback") {
		t.Errorf("report has a traceback:\n%s", msg)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s written despite the layout error", out)
	}
}

// The toolkit's own Python tests (golden/toolkit/test_toolkit.py): the
// dumper bit-exact against golden/toolkit/reference.py, trace gradients
// against an autograd run, the shared v2 example, every refusal, the
// validator, the manifest and the bug catalog.
// About 25 s on two cores, so -short (make test) leaves it out.
func TestPythonToolkitTests(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: run go test ./golden/dump or /usr/bin/python3 -B -m golden.toolkit.test_toolkit")
	}
	requireTorch(t)
	out, err := toolkit(t, "test_toolkit").CombinedOutput()
	if err != nil {
		t.Fatalf("golden.toolkit.test_toolkit: %v\n%s", err, out)
	}
	t.Logf("%s", lastLine(string(out)))
}
