// Package golden loads golden cases: safetensors files in the
// bitnet-golden/v1 or v2 format (docs/golden-format.md, golden/format.json) that hold a model's
// weights and inputs together with the outputs and gradients a correct
// BitNet b1.58 implementation must reproduce. v2 adds an op-level trace of
// every layer, the gradient at every trace point and the measured spread of
// alternative correct runs.
//
// The committed cases live in golden/cases and are written by
// python3 -m golden.toolkit.generate (`make golden`); users may point the harness at
// their own folders of cases. Files are untrusted: Load validates every
// field before it is used, and every error names the file, the tensor or
// metadata key, and the expected and actual values.
//
// Dimension legend used in shape comments:
//
//	B   batch size            T   sequence length
//	H   hidden_size           I   intermediate_size
//	V   vocab_size            L   num_hidden_layers
//	N   rows of a bitlinear case's input
//	in  bitlinear input size  out bitlinear output size
package golden

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
)

// The values of the "format" metadata key this package reads.
const (
	FormatV1 = "bitnet-golden/v1"
	FormatV2 = "bitnet-golden/v2"
	// Format is the version the project's generator writes.
	Format = FormatV2
)

// TracePoint is one tensor of a v2 layer trace, trace.{i}.{Name}.
type TracePoint struct {
	Name string
	// Dim is the format.json dimension of the last axis: H, q, kv or I.
	Dim string
	// Width is the size of the last dimension: [B,T,Width].
	Width func(cfg model.Config) int64
}

// TracePoints lists a layer's trace in the order the layer computes it,
// as golden/format.json lists it.
var TracePoints = format.tracePoints()

// TraceName is the tensor name of trace point point of layer i.
func TraceName(i int, point string) string { return format.traceName(i, point) }

// HiddenName is the tensor name of the residual stream before layer i.
func HiddenName(i int) string { return format.hiddenName(i) }

// Kind says what a case tests.
type Kind string

const (
	// KindModel is a whole-model case: weights, input_ids, logits, hidden
	// states, final norm, loss and (optionally) parameter gradients.
	KindModel Kind = "model"
	// KindBitlinear is a single quantized linear layer with its gradients.
	KindBitlinear Kind = "bitlinear"
)

// Case is one validated golden file. Model cases fill Config through
// Grads; bitlinear cases fill X through GradWeight.
type Case struct {
	Path        string // the file it was loaded from
	Name        string // file name without the .safetensors extension
	Generator   string // metadata "generator": what produced the file
	Description string // metadata "description", if any
	Kind        Kind
	Version     int // 1 or 2, from metadata "format"

	Config model.Config // from metadata "config"; validated
	Batch  model.Batch  // input_ids [B,T]; every id in [0,V)

	// Params holds every tensor of Config.Inventory() under its HF name,
	// with exactly the inventory shape.
	Params    map[string]*model.Tensor
	Logits    *model.Tensor   // [B,T,V]
	Hidden    []*model.Tensor // L+1 tensors [B,T,H]: embedding output, then after each layer
	FinalNorm *model.Tensor   // [B,T,H], after model.norm
	Loss      float64         // mean next-token cross-entropy
	// Grads maps a parameter name (without the "grad." prefix) to d loss /
	// d parameter. It holds the parameters the file has gradients for,
	// possibly none.
	Grads map[string]*model.Tensor

	// Nodes holds, in v2 model cases, every traced tensor of the forward
	// pass under its file name: hidden.{i}, final_norm, logits and every
	// trace.{i}.{point} (TracePoints). In v1 cases it holds hidden.{i},
	// final_norm and logits only.
	Nodes map[string]*model.Tensor
	// NodeGrads maps a node name (without "grad.") to d loss / d node, the
	// total derivative. v2 model cases have one for every node; v1 none.
	NodeGrads map[string]*model.Tensor
	// Spread maps logits, loss, final_norm, hidden.{i} and grad.{parameter}
	// to the relative L2 spread of alternative correct runs. nil when the
	// file has none (v1, or a v2 file from a tool that cannot measure it).
	Spread map[string]float64

	X          *model.Tensor // [N,in]
	Weight     *model.Tensor // [out,in], latent
	Y          *model.Tensor // [N,out]
	GradY      *model.Tensor // [N,out] upstream gradient; nil if the file has no gradients
	GradX      *model.Tensor // [N,in]; nil if the file has no gradients
	GradWeight *model.Tensor // [out,in]; nil if the file has no gradients
}

// Extension is the file extension Discover looks for.
const Extension = ".safetensors"

// Dir is the absolute path of the project's committed cases (golden/cases),
// found from this source file's location so that tests in any package can
// reach them. In a binary built with -trimpath the path is module-relative
// and only resolves from the repository root.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("golden", "cases")
	}
	return filepath.Join(filepath.Dir(file), "cases")
}

// Discover lists the *.safetensors files directly inside each folder,
// sorted by name within a folder, folders in the order given. A file that
// two folders share is listed once. A folder that does not exist or cannot
// be read is an error.
func Discover(dirs ...string) ([]string, error) {
	var paths []string
	seen := map[string]bool{}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("golden dir %s: %w", dir, err)
		}
		for _, e := range entries { // os.ReadDir sorts by name
			if !strings.HasSuffix(e.Name(), Extension) || e.IsDir() {
				continue
			}
			path := filepath.Join(dir, e.Name())
			key := path
			if abs, err := filepath.Abs(path); err == nil {
				key = abs
			}
			if !seen[key] {
				seen[key] = true
				paths = append(paths, path)
			}
		}
	}
	return paths, nil
}

// Load reads and validates one golden case.
func Load(path string) (*Case, error) {
	f, err := tensorfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f, path)
}

// Parse validates one golden case held in memory, as Load does for a file;
// name stands in for the path in errors and Case.Path.
func Parse(name string, data []byte) (*Case, error) {
	f, err := tensorfile.OpenBytes(name, data)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f, name)
}

// read validates the case in an open file.
func read(f *tensorfile.File, path string) (*Case, error) {
	var err error
	r := &reader{f: f, path: path, used: map[string]bool{}}
	c := &Case{Path: path, Name: strings.TrimSuffix(filepath.Base(path), Extension)}
	if err := r.metadata(c); err != nil {
		return nil, err
	}
	switch c.Kind {
	case KindModel:
		err = r.modelCase(c)
	case KindBitlinear:
		err = r.bitlinearCase(c)
	}
	if err != nil {
		return nil, err
	}
	if err := r.noUnexpected(c.Kind); err != nil {
		return nil, err
	}
	return c, nil
}

// reader validates one open file; used records the tensors consumed so that
// leftovers can be reported.
type reader struct {
	f    *tensorfile.File
	path string
	used map[string]bool
}

func (r *reader) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{r.path}, args...)...)
}

func (r *reader) metadata(c *Case) error {
	md := r.f.Header.Metadata
	format, ok := md["format"]
	if !ok {
		return r.errorf("metadata %q: missing, expected %q", "format", Format)
	}
	switch format {
	case FormatV1:
		c.Version = 1
	case FormatV2:
		c.Version = 2
	default:
		return r.errorf("metadata %q: unsupported version %q, expected %q or %q (regenerate the file or see docs/golden-format.md)", "format", format, FormatV2, FormatV1)
	}
	c.Generator = md["generator"]
	if strings.TrimSpace(c.Generator) == "" {
		return r.errorf("metadata %q: missing or empty, expected free text naming the tool, version and seed", "generator")
	}
	c.Description = md["description"]
	switch kind := md["case"]; kind {
	case "", string(KindModel):
		c.Kind = KindModel
	case string(KindBitlinear):
		c.Kind = KindBitlinear
	default:
		return r.errorf("metadata %q: expected %q or %q, got %q", "case", KindModel, KindBitlinear, kind)
	}
	return nil
}

func (r *reader) modelCase(c *Case) error {
	if err := r.config(c); err != nil {
		return err
	}
	cfg := c.Config
	if err := r.inputIDs(c); err != nil {
		return err
	}
	B, T := int64(c.Batch.B), int64(c.Batch.T)
	H, V := cfg.HiddenSize, cfg.VocabSize

	inventory := cfg.Inventory()
	c.Params = make(map[string]*model.Tensor, len(inventory))
	for _, spec := range inventory {
		t, err := r.float32(spec.Name, spec.Shape)
		if err != nil {
			return err
		}
		c.Params[spec.Name] = t
	}
	var err error
	if c.Logits, err = r.float32("logits", []int64{B, T, V}); err != nil {
		return err
	}
	c.Hidden = make([]*model.Tensor, cfg.NumHiddenLayers+1)
	for i := range c.Hidden {
		if c.Hidden[i], err = r.float32(HiddenName(i), []int64{B, T, H}); err != nil {
			return err
		}
	}
	if c.FinalNorm, err = r.float32("final_norm", []int64{B, T, H}); err != nil {
		return err
	}
	loss, err := r.float32("loss", []int64{})
	if err != nil {
		return err
	}
	c.Loss = float64(loss.Data[0])
	if c.Loss < 0 {
		return r.errorf("tensor %q: value %v, expected a non-negative cross-entropy", "loss", c.Loss)
	}
	c.Grads = map[string]*model.Tensor{}
	for _, spec := range inventory {
		name := format.GradientPrefix + spec.Name
		if _, ok := r.f.Info(name); !ok {
			continue
		}
		if c.Grads[spec.Name], err = r.float32(name, spec.Shape); err != nil {
			return err
		}
	}
	c.Nodes = map[string]*model.Tensor{"logits": c.Logits, "final_norm": c.FinalNorm}
	for i, h := range c.Hidden {
		c.Nodes[HiddenName(i)] = h
	}
	if c.Version == 1 {
		return nil
	}
	return r.v2(c)
}

// v2 reads what a v2 model case adds: the layer traces, the gradient at
// every node, and the optional spread.
func (r *reader) v2(c *Case) error {
	B, T := int64(c.Batch.B), int64(c.Batch.T)
	for i := 0; i < int(c.Config.NumHiddenLayers); i++ {
		for _, p := range TracePoints {
			name := TraceName(i, p.Name)
			t, err := r.float32(name, []int64{B, T, p.Width(c.Config)})
			if err != nil {
				return err
			}
			c.Nodes[name] = t
		}
	}
	c.NodeGrads = make(map[string]*model.Tensor, len(c.Nodes))
	for _, name := range sortedKeys(c.Nodes) {
		t, err := r.float32(format.GradientPrefix+name, shape64(c.Nodes[name].Shape))
		if err != nil {
			return err
		}
		c.NodeGrads[name] = t
	}
	if len(c.Grads) != len(c.Params) {
		for _, name := range sortedKeys(c.Params) {
			if c.Grads[name] == nil {
				return r.errorf("tensor %q: missing, a v2 model case holds the gradient of every parameter", format.GradientPrefix+name)
			}
		}
	}
	return r.spread(c)
}

// SpreadKeys lists the keys a model case's spread object must have, in
// the order golden/format.json's spread_keys gives.
func SpreadKeys(c *Case) []string { return format.spreadKeys(c.Config, len(c.Hidden)) }

// spread parses the optional "spread" metadata: a JSON object with a
// finite, non-negative number for exactly the keys SpreadKeys lists.
func (r *reader) spread(c *Case) error {
	raw, ok := r.f.Header.Metadata["spread"]
	if !ok {
		return nil
	}
	var values map[string]float64
	if err := json.Unmarshal([]byte(raw), &values); err != nil {
		return r.errorf("metadata %q: expected a JSON object of numbers, got %.60q: %v", "spread", raw, err)
	}
	want := SpreadKeys(c)
	known := make(map[string]bool, len(want))
	for _, k := range want {
		known[k] = true
		v, ok := values[k]
		if !ok {
			return r.errorf("metadata %q: key %q missing (a spread must cover logits, loss, final_norm, every hidden.i and every grad.parameter)", "spread", k)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return r.errorf("metadata %q: key %q is %v, expected a finite number >= 0", "spread", k, v)
		}
	}
	for _, k := range sortedKeys(values) {
		if !known[k] {
			return r.errorf("metadata %q: unexpected key %q, not a tensor of this case", "spread", k)
		}
	}
	c.Spread = values
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func shape64(shape []int) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		out[i] = int64(d)
	}
	return out
}

// tensorsPerLayer is how many tensors each decoder layer adds to a model
// case at least: eleven parameters and one hidden state. Bounding
// num_hidden_layers by the file's tensor count before the config is
// expanded into an inventory keeps a hostile config from exhausting memory.
const tensorsPerLayer = 12

func (r *reader) config(c *Case) error {
	raw, ok := r.f.Header.Metadata["config"]
	if !ok {
		return r.errorf("metadata %q: missing, expected the model's HF config.json as a JSON string", "config")
	}
	var layers struct {
		NumHiddenLayers int64 `json:"num_hidden_layers"`
	}
	if err := json.Unmarshal([]byte(raw), &layers); err == nil {
		if n := int64(len(r.f.Header.Tensors)); layers.NumHiddenLayers > n/tensorsPerLayer {
			return r.errorf("metadata config: num_hidden_layers %d needs at least %d tensors, the file has %d",
				layers.NumHiddenLayers, layers.NumHiddenLayers*tensorsPerLayer, n)
		}
	}
	cfg, err := model.ParseConfig([]byte(raw), r.path+": metadata config")
	if err != nil {
		return err
	}
	if mode := cfg.QuantizationMode(); mode != "online" {
		return r.errorf("metadata config: quantization_config.quantization_mode: expected %q (golden cases hold latent weights), got %q", "online", mode)
	}
	c.Config = cfg
	return nil
}

func (r *reader) inputIDs(c *Case) error {
	const name = "input_ids"
	info, ok := r.f.Info(name)
	if !ok {
		return r.errorf("tensor %q: missing, expected I64 [B,T]", name)
	}
	if info.DType != "I64" {
		return r.errorf("tensor %q: expected dtype I64, got %s", name, info.DType)
	}
	if len(info.Shape) != 2 {
		return r.errorf("tensor %q: expected shape [B,T], got %s", name, tensorfile.ShapeString(info.Shape))
	}
	B, T := info.Shape[0], info.Shape[1]
	if B < 1 {
		return r.errorf("tensor %q: expected batch size B >= 1, got shape %s", name, tensorfile.ShapeString(info.Shape))
	}
	// The loss predicts token t+1 from token t, so it needs two tokens.
	if T < 2 {
		return r.errorf("tensor %q: expected sequence length T >= 2 (the loss needs a next token), got shape %s", name, tensorfile.ShapeString(info.Shape))
	}
	if maxT := c.Config.MaxPositionEmbeddings; T > maxT {
		return r.errorf("tensor %q: sequence length T = %d exceeds config max_position_embeddings %d", name, T, maxT)
	}
	ids, err := r.f.Int64(name)
	if err != nil {
		return err
	}
	r.used[name] = true
	V := c.Config.VocabSize
	batch := model.Batch{B: int(B), T: int(T), IDs: make([]int32, len(ids))}
	for i, id := range ids {
		if id < 0 || id >= V {
			return r.errorf("tensor %q: id at [%d,%d] is %d, expected a token id in [0, %d) (vocab_size %d)", name, int64(i)/T, int64(i)%T, id, V, V)
		}
		batch.IDs[i] = int32(id)
	}
	c.Batch = batch
	return nil
}

func (r *reader) bitlinearCase(c *Case) error {
	x, ok := r.f.Info("x")
	if !ok {
		return r.errorf("tensor %q: missing, expected F32 [N,in]", "x")
	}
	weight, ok := r.f.Info("weight")
	if !ok {
		return r.errorf("tensor %q: missing, expected F32 [out,in]", "weight")
	}
	if len(x.Shape) != 2 || x.Shape[0] < 1 || x.Shape[1] < 1 {
		return r.errorf("tensor %q: expected shape [N,in] with N, in >= 1, got %s", "x", tensorfile.ShapeString(x.Shape))
	}
	if len(weight.Shape) != 2 || weight.Shape[0] < 1 {
		return r.errorf("tensor %q: expected shape [out,in] with out >= 1, got %s", "weight", tensorfile.ShapeString(weight.Shape))
	}
	N, in, out := x.Shape[0], x.Shape[1], weight.Shape[0]
	var err error
	if c.X, err = r.float32("x", []int64{N, in}); err != nil {
		return err
	}
	if c.Weight, err = r.float32("weight", []int64{out, in}); err != nil {
		return err
	}
	if c.Y, err = r.float32("y", []int64{N, out}); err != nil {
		return err
	}
	// The three gradient tensors come together or not at all.
	grads := []string{"grad_y", "grad.x", "grad.weight"}
	var present []string
	for _, name := range grads {
		if _, ok := r.f.Info(name); ok {
			present = append(present, name)
		}
	}
	if len(present) == 0 {
		return nil
	}
	if len(present) != len(grads) {
		return r.errorf("bitlinear gradients: expected all of %s or none, got only %s", strings.Join(grads, ", "), strings.Join(present, ", "))
	}
	if c.GradY, err = r.float32("grad_y", []int64{N, out}); err != nil {
		return err
	}
	if c.GradX, err = r.float32("grad.x", []int64{N, in}); err != nil {
		return err
	}
	c.GradWeight, err = r.float32("grad.weight", []int64{out, in})
	return err
}

// float32 reads a required F32 tensor of exactly the given shape and checks
// that every value is finite.
func (r *reader) float32(name string, shape []int64) (*model.Tensor, error) {
	info, ok := r.f.Info(name)
	if !ok {
		return nil, r.errorf("tensor %q: missing, expected F32 %s", name, tensorfile.ShapeString(shape))
	}
	if info.DType != "F32" {
		return nil, r.errorf("tensor %q: expected dtype F32, got %s", name, info.DType)
	}
	if !slices.Equal(info.Shape, shape) {
		return nil, r.errorf("tensor %q: expected shape %s, got %s", name, tensorfile.ShapeString(shape), tensorfile.ShapeString(info.Shape))
	}
	data, err := r.f.Float32(name)
	if err != nil {
		return nil, err
	}
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, r.errorf("tensor %q: value %v at index %s (flat %d), expected finite values", name, v, indexString(i, shape), i)
		}
	}
	r.used[name] = true
	dims := make([]int, len(shape))
	for i, d := range shape {
		dims[i] = int(d)
	}
	return &model.Tensor{Shape: dims, Data: data}, nil
}

// noUnexpected rejects tensors the format does not define for this case:
// a stray lm_head.weight in a tied model or a hidden state past the last
// layer means the file and its config disagree.
func (r *reader) noUnexpected(kind Kind) error {
	var extra []string
	for _, info := range r.f.Header.Tensors {
		if !r.used[info.Name] {
			extra = append(extra, fmt.Sprintf("%q", info.Name))
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Strings(extra)
	const shown = 5
	more := ""
	if len(extra) > shown {
		more = fmt.Sprintf(" and %d more", len(extra)-shown)
		extra = extra[:shown]
	}
	return r.errorf("unexpected tensor(s) %s%s: not part of a %s case with this config", strings.Join(extra, ", "), more, kind)
}

// indexString formats flat index i of a row-major tensor as [a,b,c].
func indexString(i int, shape []int64) string {
	if len(shape) == 0 {
		return "[]"
	}
	idx := make([]int64, len(shape))
	rest := int64(i)
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = rest % shape[d]
		rest /= shape[d]
	}
	return tensorfile.ShapeString(idx)
}
