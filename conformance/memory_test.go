package conformance_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hugeConfig is the config that crashed the instantiation suite with
// "fatal error: out of memory" (issue 14): hidden 65536, 4096 layers, vocab
// 1,000,000, about 2.6e14 parameters.
const hugeConfig = `{"hidden_size": 65536, "intermediate_size": 131072, "num_hidden_layers": 4096,
  "num_attention_heads": 512, "num_key_value_heads": 8, "vocab_size": 1000000,
  "max_position_embeddings": 4096, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
  "hidden_act": "relu2", "tie_word_embeddings": false}`

// A model that cannot fit fails its specs with the estimate, the available
// memory and advice, through the suites' own code path; it never crashes.
func TestTooLargeModelFailsItsSpecs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "too-large.json"), []byte(hugeConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ckpt := t.TempDir()
	if err := os.WriteFile(filepath.Join(ckpt, "config.json"), []byte(hugeConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	suites := []string{"./suites/instantiation", "./suites/gradient"}
	for _, c := range []struct{ name, want string }{
		{"-configs=too-large", "too-large does not fit: estimated peak"},
		{"-memory-mode=streamed", "too-large does not fit even layer-streamed: estimated peak"},
		{"-model-dir", "checkpoint does not fit: estimated peak"},
	} {
		args := []string{"-config-dir=" + dir, "-configs=too-large"}
		switch c.name {
		case "-memory-mode=streamed":
			args = append(args, c.name)
		case "-model-dir":
			args = []string{"-model-dir=" + ckpt}
		}
		// The golden cases run whatever the config (1,035 gradient specs a
		// call, all passing); the specs this test reads are the config's.
		args = append(args, "-ginkgo.label-filter=!golden")
		out, ok := runSuites(t, suites, args...)
		if ok {
			t.Errorf("%s: the suites passed a model that cannot fit:\n%s", c.name, out)
			continue
		}
		for _, want := range []string{c.want, "available", "free memory", "[FAIL]"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: suite output lacks %q", c.name, want)
			}
		}
		for _, crash := range []string{"fatal error", "panic:", "signal: killed"} {
			if strings.Contains(out, crash) {
				t.Errorf("%s: suite output has %q", c.name, crash)
			}
		}
		if t.Failed() {
			t.Logf("%s:\n%s", c.name, out)
		}
	}
}
