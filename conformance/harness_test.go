package conformance_test

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// moduleRoot is the repository root, found from this file's location.
func moduleRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the module root")
	}
	return filepath.Dir(filepath.Dir(file))
}

// runSuites runs suite packages with harness arguments as `go test -count=1
// -v pkgs... -args args...` does, and returns the combined output and
// whether every suite passed. The suites' test binaries are built once per
// test process (suiteBinaries) instead of by a go command per call, which
// loaded the packages, hashed their sources and found the cached link again
// each time: about a second a call.
func runSuites(t *testing.T, pkgs []string, args ...string) (string, bool) {
	t.Helper()
	dir, root := suiteBinaries(t), moduleRoot(t)
	// What go test passes a test binary (-count=1 -v, the default timeout),
	// then the harness arguments. Like go test, the packages run in their
	// own folders, up to GOMAXPROCS at a time, and their output is given
	// package by package.
	flags := []string{"-test.paniconexit0", "-test.timeout=10m0s", "-test.count=1", "-test.v=true"}
	flags = append(flags, append(args, "-ginkgo.no-color")...)
	outs, oks := make([]string, len(pkgs)), make([]bool, len(pkgs))
	var wg sync.WaitGroup
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, pkg := range pkgs {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			cmd := exec.Command(filepath.Join(dir, path.Base(pkg)+".test"), flags...)
			cmd.Dir = filepath.Join(root, filepath.FromSlash(pkg))
			cmd.Env = append(os.Environ(), "CONFORMANCE_CONFIGS=", "CONFORMANCE_MODEL_DIR=", "CONFORMANCE_CONFIG_DIR=", "CONFORMANCE_GOLDEN_DIR=")
			out, err := cmd.CombinedOutput()
			outs[i], oks[i] = string(out), err == nil
			if err != nil {
				outs[i] += fmt.Sprintf("FAIL\t%s: %v\n", pkg, err)
			}
		})
	}
	wg.Wait()
	return strings.Join(outs, ""), !slices.Contains(oks, false)
}

// suiteBins holds the suites' test binaries, built on first use and
// removed by TestMain.
var suiteBins struct {
	once sync.Once
	dir  string
	err  error
}

// suiteBinaries builds the test binary of every suite package into one
// folder (go test -c -o dir/ ./suites/..., as go test would build them)
// once per test process, and returns the folder; <name>.test is the binary
// of ./suites/<name>.
func suiteBinaries(t *testing.T) string {
	t.Helper()
	suiteBins.once.Do(func() {
		dir, err := os.MkdirTemp("", "suites")
		if err != nil {
			suiteBins.err = err
			return
		}
		suiteBins.dir = dir
		cmd := exec.Command("go", "test", "-c", "-o", dir+string(filepath.Separator), "./suites/...")
		cmd.Dir = moduleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			suiteBins.err = fmt.Errorf("building the suites: %v\n%s", err, out)
		}
	})
	if suiteBins.err != nil {
		t.Fatal(suiteBins.err)
	}
	return suiteBins.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if suiteBins.dir != "" {
		os.RemoveAll(suiteBins.dir)
	}
	os.Exit(code)
}

// Dropping one JSON file into a folder named on the command line gives the
// new preset every spec of every suite, with no code change.
func TestNewPresetReachesEverySuite(t *testing.T) {
	dir := t.TempDir()
	cfg := `{"hidden_size": 128, "intermediate_size": 320, "num_hidden_layers": 2,
	  "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 300,
	  "max_position_embeddings": 64, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
	  "hidden_act": "relu2", "tie_word_embeddings": false}`
	if err := os.WriteFile(filepath.Join(dir, "my-13b-mini.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	suites := []string{"./suites/architecture", "./suites/instantiation", "./suites/forward", "./suites/gradient"}
	out, ok := runSuites(t, suites, "-config-dir="+dir, "-configs=my-13b-mini", "-ginkgo.dry-run", "-ginkgo.v")
	if !ok {
		t.Fatalf("dry run failed:\n%s", out)
	}
	for _, suite := range []string{"Architecture", "Instantiation", "Forward", "Gradient flow"} {
		if !strings.Contains(out, suite+" my-13b-mini") {
			t.Errorf("suite %s has no spec for the new preset my-13b-mini", suite)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func writeCheckpoint(t *testing.T, cfg model.Config, mode string, shards int) string {
	t.Helper()
	dir := t.TempDir()
	if err := checkpoint.WriteSynthetic(dir, cfg, mode, shards); err != nil {
		t.Fatal(err)
	}
	return dir
}

func preset(t *testing.T, name string) presets.Preset {
	t.Helper()
	all, err := presets.Load()
	if err != nil {
		t.Fatal(err)
	}
	return all[name]
}

// A checkpoint whose config.json carries the seed README's numbers
// (2048/24/32/5632/152064, rope 1e4) is reported as MISMATCH naming every
// wrong field, both by the library and by the architecture suite.
func TestSeedNumbersCheckpointIsAMismatch(t *testing.T) {
	tiny := preset(t, "tiny-gqa-untied").Config
	dir := writeCheckpoint(t, tiny, "online", 1)
	seed := preset(t, presets.ReferenceName).Config
	seed.HiddenSize, seed.NumHiddenLayers, seed.NumAttentionHeads, seed.NumKeyValueHeads = 2048, 24, 32, 32
	seed.IntermediateSize, seed.VocabSize, seed.RopeTheta, seed.HeadDimension = 5632, 152064, 10000, 0
	seed.TieWordEmbeddings, seed.Conformance = false, nil
	if err := os.WriteFile(filepath.Join(dir, "config.json"), seed.JSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFields := []string{"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size", "vocab_size", "rope_theta"}

	mismatches, err := presets.CheckpointMismatches(dir, preset(t, presets.ReferenceName))
	if err != nil {
		t.Fatal(err)
	}
	report := presets.MismatchReport(mismatches)
	for _, f := range wantFields {
		if !strings.Contains(report, f+": ours=") {
			t.Errorf("mismatch report does not name %s:\n%s", f, report)
		}
	}

	out, ok := runSuites(t, []string{"./suites/architecture"}, "-model-dir="+dir)
	if ok {
		t.Fatalf("the architecture suite passed a seed-numbers checkpoint:\n%s", out)
	}
	for _, want := range append([]string{"MISMATCH with bitnet-b1.58-2b-4t", "VALIDATION FAILED", "hidden_size: ours=2048, reference=2560", "rope_theta: ours=10000, reference=500000"}, wantFields...) {
		if !strings.Contains(out, want) {
			t.Errorf("suite output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

// Correct checkpoints pass in both layouts, and each broken one is reported
// by tensor name.
func TestCheckpointInventoryProblems(t *testing.T) {
	cfg := preset(t, "tiny-gqa-untied").Config
	for _, mode := range []string{"online", "offline"} {
		dir := writeCheckpoint(t, cfg, mode, 1)
		report, err := checkpoint.Inspect(dir, cfg)
		if err != nil || len(report.Problems) > 0 {
			t.Errorf("%s checkpoint: err %v, problems %v", mode, err, report.Problems)
		}
	}

	wrongShape := writeCheckpoint(t, cfg, "online", 1)
	if err := checkpoint.ReshapeTensor(wrongShape, "model.layers.1.mlp.up_proj.weight", []int64{225, 96}); err != nil {
		t.Fatal(err)
	}
	missing := writeCheckpoint(t, cfg, "online", 2)
	if err := checkpoint.DeleteTensor(missing, "model.layers.0.self_attn.k_proj.weight"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{wrongShape, "model.layers.1.mlp.up_proj.weight"},
		{missing, "model.layers.0.self_attn.k_proj.weight"},
	} {
		report, err := checkpoint.Inspect(tc.dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(report.Problems) != 1 || report.Problems[0].Tensor != tc.want {
			t.Errorf("problems %v, expected exactly one naming %s", report.Problems, tc.want)
		}
	}

	out, ok := runSuites(t, []string{"./suites/architecture"}, "-model-dir="+wrongShape, "-configs=tiny-gqa-untied")
	if ok || !strings.Contains(out, "model.layers.1.mlp.up_proj.weight") {
		t.Errorf("the architecture suite did not fail naming the mis-shaped tensor:\n%s", out)
	}
	good := writeCheckpoint(t, cfg, "offline", 3)
	if out, ok := runSuites(t, []string{"./suites/architecture"}, "-model-dir="+good, "-configs=tiny-gqa-untied"); !ok {
		t.Errorf("the architecture suite failed a correct sharded offline checkpoint:\n%s", out)
	}
}

// With -model-dir, the instantiation, forward and gradient suites run on the
// loaded checkpoint instead of a random initialisation, in both layouts,
// resident and layer-streamed from the checkpoint's files.
func TestModelDirRunsEveryModelSuite(t *testing.T) {
	cfg := preset(t, "tiny-mqa-tied").Config
	for _, mode := range []string{"online", "offline"} {
		dir := t.TempDir()
		m, err := model.New(cfg, model.Options{Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if err := checkpoint.Save(m, dir, mode, 2); err != nil {
			t.Fatal(err)
		}
		for _, memory := range []string{"auto", "streamed"} {
			out, ok := runSuites(t, []string{"./suites/instantiation", "./suites/forward", "./suites/gradient"},
				"-model-dir="+dir, "-memory-mode="+memory, "-ginkgo.label-filter=config:checkpoint", "-ginkgo.v")
			if !ok {
				t.Fatalf("%s checkpoint, -memory-mode=%s: the model suites failed:\n%s", mode, memory, out)
			}
			for _, want := range []string{"Instantiation checkpoint has exactly the analytic parameter count", "Forward checkpoint is causal", "Gradient flow checkpoint gives every parameter a finite, non-zero gradient"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s checkpoint, -memory-mode=%s: no spec %q ran", mode, memory, want)
				}
			}
		}
	}
}

// A folder of new valid golden cases named with -golden-dir runs with no
// code change: each file becomes its own container of specs.
func TestGoldenDirRunsNewCases(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(golden.Dir(), smallestModelCase))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "team-b-case.safetensors"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	dirName := filepath.Base(dir)
	out, ok := runSuites(t, []string{"./suites/forward", "./suites/gradient"}, "-golden-dir="+dir, "-ginkgo.label-filter=golden", "-ginkgo.v")
	if !ok {
		t.Fatalf("golden specs failed on a copy of a committed case:\n%s", out)
	}
	for _, want := range []string{"Golden numerics " + dirName + "/team-b-case logits end to end from input_ids", "Gradient flow " + dirName + "/team-b-case grad.model.norm.weight end to end from the loss"} {
		if !strings.Contains(out, want) {
			t.Errorf("no spec %q ran", want)
		}
	}
}
