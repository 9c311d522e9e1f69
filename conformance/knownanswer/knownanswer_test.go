package knownanswer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/conformance/knownanswer"
	"github.com/tritter-ai/conformance/conformance/presets"
)

func preset(t *testing.T, name string) presets.Preset {
	t.Helper()
	all, err := presets.Load()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := all[name]
	if !ok {
		t.Fatalf("no preset %s", name)
	}
	return p
}

func TestShippedKnownAnswerIsFor2B4T(t *testing.T) {
	answers, err := knownanswer.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if len(answers) != 1 || answers[0].Checkpoint != "microsoft/bitnet-b1.58-2B-4T" {
		t.Fatalf("shipped known answers: %v", answers)
	}
	k := answers[0]
	if reason := k.SkipReason(preset(t, presets.ReferenceName).Config); reason != "" {
		t.Errorf("the 2B-4T file does not match the 2B-4T preset: %s", reason)
	}
	reason := k.SkipReason(preset(t, "tiny-gqa-untied").Config)
	for _, want := range []string{"is for another config", "hidden_size: file 2560, checkpoint 96", "tie_word_embeddings: file true, checkpoint false"} {
		if !strings.Contains(reason, want) {
			t.Errorf("skip reason %q lacks %q", reason, want)
		}
	}
	if len(k.InputIDs) != 12 || len(k.MeanLogits.Values) != 12 || len(k.Slices) != 1 || len(k.Slices[0].Values) != 30 {
		t.Errorf("2B-4T file: %d ids, %d means, %d slices", len(k.InputIDs), len(k.MeanLogits.Values), len(k.Slices))
	}
}

func TestKnownAnswerFileErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("answers", "bitnet-b1.58-2b-4t.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{`"bitnet-known-answer/v1"`, `"bitnet-known-answer/v0"`, `format: expected "bitnet-known-answer/v1", got "bitnet-known-answer/v0"`},
		{`"head_dim": 128,`, ``, "fingerprint.head_dim: missing"},
		{`[128000, 128000, 1502`, `[128000, 128256, 1502`, "input_ids[1]: expected a token id in [0, 128256), got 128256"},
		{`, -8.7610]`, `]`, "mean_logits.values: expected one per input id (12), got 11"},
		{`"position": 0`, `"position": 12`, "slices[0].position: expected 0..11, got 12"},
		{`"rtol": 0.05`, `"rtol": -1`, "mean_logits: rtol: expected a finite non-negative number, got -1"},
		{`"atol": 0.5,`, `"atoll": 0.5,`, `unknown field "atoll"`},
		{`"start": 0`, `"start": 9223372036854775807`, "slices[0]: vocabulary entries"},
	} {
		data := strings.Replace(string(good), tc.old, tc.new, 1)
		_, err := knownanswer.Parse([]byte(data), "bad.json")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "bad.json: ") {
			t.Errorf("%s → %s: error %v, expected %q", tc.old, tc.new, err, tc.want)
		}
	}
}

func FuzzParseKnownAnswer(f *testing.F) {
	shipped, err := os.ReadFile(filepath.Join("answers", "bitnet-b1.58-2b-4t.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shipped)
	f.Add([]byte(strings.Replace(string(shipped), `"start": 0`, `"start": 9223372036854775807`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := knownanswer.Parse(data, "fuzz.json")
		if err != nil {
			return
		}
		// A file that parses has as many means as ids and slices inside the vocabulary.
		if k.MeanLogits != nil && len(k.MeanLogits.Values) != len(k.InputIDs) {
			t.Fatalf("%d means for %d ids", len(k.MeanLogits.Values), len(k.InputIDs))
		}
		for _, s := range k.Slices {
			if s.Start < 0 || int64(s.Start) > k.Fingerprint.VocabSize-int64(len(s.Values)) {
				t.Fatalf("slice [%d, +%d) outside vocabulary %d", s.Start, len(s.Values), k.Fingerprint.VocabSize)
			}
		}
	})
}
