// Package knownanswer reads known-answer files: expected logits statistics
// of a named checkpoint on fixed input ids, which travel without the
// weights, and checks a model against them.
package knownanswer

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tritter-ai/conformance/model"
)

// Format is the format string of a known-answer file.
const Format = "bitnet-known-answer/v1"

// Suffix names known-answer files inside a -model-dir folder:
// a team keeps the expectations of its own PyTorch run next to its
// checkpoint as, for example, ours.knownanswer.json.
const Suffix = ".knownanswer.json"

// shipped are the shipped known answers, one per published
// checkpoint; the harness runs every one whose fingerprint matches
// -model-dir.
//
//go:embed answers/*.json
var shipped embed.FS

// File is a known-answer file: expected logits statistics of a named
// checkpoint on fixed input ids, which travel without the weights.
type File struct {
	// Format is Format.
	Format string `json:"format"`
	// Checkpoint names the weights the numbers come from, for example
	// "microsoft/bitnet-b1.58-2B-4T".
	Checkpoint string `json:"checkpoint"`
	// Source says who computed the numbers, how and in which dtype.
	Source string `json:"source"`
	// Fingerprint holds the config fields that decide shapes and numerics;
	// the file runs only on a checkpoint whose config has the same values.
	Fingerprint Fingerprint `json:"fingerprint"`
	// InputIDs is one sequence (batch 1).
	InputIDs []int32 `json:"input_ids"`
	// MeanLogits is the mean of the logits over the vocabulary at every
	// position: len(InputIDs) values.
	MeanLogits *Expectation `json:"mean_logits,omitempty"`
	// Slices are chosen logits: at one position, vocabulary entries
	// [Start, Start+len(Values)).
	Slices []SliceExpectation `json:"slices,omitempty"`
	// ToleranceReason says why the tolerances are what they are.
	ToleranceReason string `json:"tolerance_reason"`

	// Path is the file the known answers were read from.
	Path string `json:"-"`
}

// Fingerprint is the part of a config that decides shapes and numerics.
type Fingerprint struct {
	HiddenSize        int64   `json:"hidden_size"`
	IntermediateSize  int64   `json:"intermediate_size"`
	NumHiddenLayers   int64   `json:"num_hidden_layers"`
	NumAttentionHeads int64   `json:"num_attention_heads"`
	NumKeyValueHeads  int64   `json:"num_key_value_heads"`
	HeadDim           int64   `json:"head_dim"`
	VocabSize         int64   `json:"vocab_size"`
	RopeTheta         float64 `json:"rope_theta"`
	RMSNormEps        float64 `json:"rms_norm_eps"`
	HiddenAct         string  `json:"hidden_act"`
	TieWordEmbeddings bool    `json:"tie_word_embeddings"`
}

// fingerprintKeys are the JSON keys of Fingerprint; a file must give all.
var fingerprintKeys = []string{"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
	"num_key_value_heads", "head_dim", "vocab_size", "rope_theta", "rms_norm_eps", "hidden_act", "tie_word_embeddings"}

// FingerprintOf is a config's fingerprint.
func FingerprintOf(c model.Config) Fingerprint {
	return Fingerprint{
		HiddenSize: c.HiddenSize, IntermediateSize: c.IntermediateSize, NumHiddenLayers: c.NumHiddenLayers,
		NumAttentionHeads: c.NumAttentionHeads, NumKeyValueHeads: c.NumKeyValueHeads, HeadDim: c.HeadDim(),
		VocabSize: c.VocabSize, RopeTheta: c.RopeTheta, RMSNormEps: c.RMSNormEps, HiddenAct: c.HiddenAct,
		TieWordEmbeddings: c.TieWordEmbeddings,
	}
}

// Differences lists the fields on which a checkpoint's fingerprint differs
// from the file's, as "field: file X, checkpoint Y".
func (f Fingerprint) Differences(checkpoint Fingerprint) []string {
	pairs := []struct {
		name string
		a, b any
	}{
		{"hidden_size", f.HiddenSize, checkpoint.HiddenSize},
		{"intermediate_size", f.IntermediateSize, checkpoint.IntermediateSize},
		{"num_hidden_layers", f.NumHiddenLayers, checkpoint.NumHiddenLayers},
		{"num_attention_heads", f.NumAttentionHeads, checkpoint.NumAttentionHeads},
		{"num_key_value_heads", f.NumKeyValueHeads, checkpoint.NumKeyValueHeads},
		{"head_dim", f.HeadDim, checkpoint.HeadDim},
		{"vocab_size", f.VocabSize, checkpoint.VocabSize},
		{"rope_theta", f.RopeTheta, checkpoint.RopeTheta},
		{"rms_norm_eps", f.RMSNormEps, checkpoint.RMSNormEps},
		{"hidden_act", f.HiddenAct, checkpoint.HiddenAct},
		{"tie_word_embeddings", f.TieWordEmbeddings, checkpoint.TieWordEmbeddings},
	}
	var out []string
	for _, p := range pairs {
		if p.a != p.b {
			out = append(out, fmt.Sprintf("%s: file %v, checkpoint %v", p.name, p.a, p.b))
		}
	}
	return out
}

// Expectation is expected values with an element-wise tolerance: every
// value must satisfy |actual − expected| ≤ Atol + Rtol·|expected|.
type Expectation struct {
	Values []float64 `json:"values"`
	Atol   float64   `json:"atol"`
	Rtol   float64   `json:"rtol"`
}

// SliceExpectation is expected logits at one position of the sequence.
type SliceExpectation struct {
	Position int `json:"position"`
	Start    int `json:"start"` // first vocabulary index
	Expectation
}

// maxFileBytes bounds a known-answer file; real ones are a few KB.
const maxFileBytes = 1 << 20

// Parse decodes and validates a known-answer file. source names
// it in errors.
func Parse(data []byte, source string) (*File, error) {
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d allowed for a known-answer file", source, len(data), maxFileBytes)
	}
	var k File
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("%s: %v", source, err)
	}
	k.Path = source
	if k.Format != Format {
		return nil, fmt.Errorf("%s: format: expected %q, got %q", source, Format, k.Format)
	}
	var raw struct {
		Fingerprint map[string]json.RawMessage `json:"fingerprint"`
	}
	json.Unmarshal(data, &raw) // decoded above, so it cannot fail
	for _, key := range fingerprintKeys {
		if _, ok := raw.Fingerprint[key]; !ok {
			return nil, fmt.Errorf("%s: fingerprint.%s: missing; a fingerprint gives %s", source, key, strings.Join(fingerprintKeys, ", "))
		}
	}
	if k.Checkpoint == "" || k.Source == "" {
		return nil, fmt.Errorf("%s: checkpoint and source: expected both to name where the numbers come from, got %q and %q", source, k.Checkpoint, k.Source)
	}
	T := len(k.InputIDs)
	if T == 0 {
		return nil, fmt.Errorf("%s: input_ids: expected at least one token, got none", source)
	}
	for i, id := range k.InputIDs {
		if id < 0 || int64(id) >= k.Fingerprint.VocabSize {
			return nil, fmt.Errorf("%s: input_ids[%d]: expected a token id in [0, %d), got %d", source, i, k.Fingerprint.VocabSize, id)
		}
	}
	if k.MeanLogits == nil && len(k.Slices) == 0 {
		return nil, fmt.Errorf("%s: expected mean_logits or slices, got neither", source)
	}
	if k.MeanLogits != nil {
		if len(k.MeanLogits.Values) != T {
			return nil, fmt.Errorf("%s: mean_logits.values: expected one per input id (%d), got %d", source, T, len(k.MeanLogits.Values))
		}
		if err := k.MeanLogits.validate(); err != nil {
			return nil, fmt.Errorf("%s: mean_logits: %v", source, err)
		}
	}
	for i, s := range k.Slices {
		if s.Position < 0 || s.Position >= T {
			return nil, fmt.Errorf("%s: slices[%d].position: expected 0..%d, got %d", source, i, T-1, s.Position)
		}
		if s.Start < 0 || len(s.Values) == 0 || int64(s.Start) > k.Fingerprint.VocabSize-int64(len(s.Values)) {
			return nil, fmt.Errorf("%s: slices[%d]: vocabulary entries: expected 1 or more values from start within [0, %d), got %d from start %d", source, i, k.Fingerprint.VocabSize, len(s.Values), s.Start)
		}
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("%s: slices[%d]: %v", source, i, err)
		}
	}
	return &k, nil
}

func (e Expectation) validate() error {
	for _, t := range []struct {
		name string
		v    float64
	}{{"atol", e.Atol}, {"rtol", e.Rtol}} {
		if !(t.v >= 0) || math.IsInf(t.v, 0) {
			return fmt.Errorf("%s: expected a finite non-negative number, got %v", t.name, t.v)
		}
	}
	for i, v := range e.Values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("values[%d]: expected a finite number, got %v", i, v)
		}
	}
	return nil
}

// Load reads the shipped known answers and every
// *.knownanswer.json in modelDir (when not empty), sorted by path.
func Load(modelDir string) ([]*File, error) {
	var out []*File
	entries, err := shipped.ReadDir("answers")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		source := "answers/" + e.Name()
		data, err := shipped.ReadFile(source)
		if err != nil {
			return nil, err
		}
		k, err := Parse(data, source)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if modelDir == "" {
		return out, nil
	}
	paths, err := filepath.Glob(filepath.Join(modelDir, "*"+Suffix))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	for _, path := range paths {
		data, err := readBounded(path, maxFileBytes)
		if err != nil {
			return nil, err
		}
		k, err := Parse(data, path)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// readBounded reads a regular file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (mode %s)", path, info.Mode())
	}
	if info.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d allowed for a known-answer file", path, info.Size(), limit)
	}
	return os.ReadFile(path)
}

// SkipReason is why the file does not apply to a checkpoint config, or ""
// when its fingerprint matches.
func (k *File) SkipReason(c model.Config) string {
	diffs := k.Fingerprint.Differences(FingerprintOf(c))
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("%s (%s) is for another config: %s", k.Path, k.Checkpoint, strings.Join(diffs, "; "))
}

// Miss is one value outside its tolerance.
type Miss struct {
	What             string // "mean_logits[3]" or "logits[0, 0, 17]"
	Actual, Expected float64
	Allowed          float64 // atol + rtol·|expected|
}

func (m Miss) String() string {
	return fmt.Sprintf("%s: %.6g, expected %.6g ± %.3g (|diff| %.3g)", m.What, m.Actual, m.Expected, m.Allowed, math.Abs(m.Actual-m.Expected))
}

// Check runs the model on the file's input ids and returns every value
// outside its tolerance.
func (k *File) Check(m *model.Model) ([]Miss, error) {
	T := len(k.InputIDs)
	out, err := m.Forward(model.Batch{B: 1, T: T, IDs: k.InputIDs}, model.ForwardOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.Path, err)
	}
	V := int(m.Config().VocabSize)
	logits := out.Logits.Data // [1, T, V]
	var misses []Miss
	check := func(what string, actual float64, e Expectation, i int) {
		want := e.Values[i]
		allowed := e.Atol + e.Rtol*math.Abs(want)
		if !(math.Abs(actual-want) <= allowed) {
			misses = append(misses, Miss{What: what, Actual: actual, Expected: want, Allowed: allowed})
		}
	}
	if e := k.MeanLogits; e != nil {
		for t := 0; t < T; t++ {
			var sum float64
			for _, v := range logits[t*V : (t+1)*V] {
				sum += float64(v)
			}
			check(fmt.Sprintf("mean_logits[%d]", t), sum/float64(V), *e, t)
		}
	}
	for _, s := range k.Slices {
		for i := range s.Values {
			v := s.Start + i
			check(fmt.Sprintf("logits[0, %d, %d]", s.Position, v), float64(logits[s.Position*V+v]), s.Expectation, i)
		}
	}
	return misses, nil
}
