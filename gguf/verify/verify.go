// Package verify checks a bitnet.cpp GGUF against the HF BitNet checkpoint
// it was converted from, and says what bitnet.cpp will compute from it.
//
// A Verifier holds the file and the HF side (a Reference: a checkpoint
// folder, online master or offline packed, either linear_class, or a model
// in memory). It has one method per finding class; each returns the
// findings of its class, every one naming the key or tensor, the row and
// column where it applies, and the expected and actual values:
//
//	Metadata     general.architecture and every arch key against config.json
//	Inventory    tensor names, shapes and types
//	Codes        every ternary code against the HF codes, row by row
//	Scales       every tensor scale against mean|W| or weight_scale
//	Layout       the I2_S packing layout each tensor decodes in
//	ZeroTensors  ternary tensors that are all zero
//	Logits       a model decoded from the file against the HF model
//
// and five classes of "faithful conversion, but bitnet.cpp will mis-run
// it" findings (Finding.Runtime is true for them): UntiedHead, HeadDim,
// SubNormSize, RowWidths and FloatLinears.
//
// Tensors are read one at a time, so memory stays near one layer plus the
// embedding. Nothing here panics on a bad file: every problem is a finding
// or an error naming the file.
package verify

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tritter-ai/conformance/gguf"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// The finding classes, as Finding.Check names them.
const (
	CheckMetadata     = "metadata"
	CheckInventory    = "inventory"
	CheckCodes        = "codes"
	CheckScales       = "scales"
	CheckLayout       = "layout"
	CheckZeroTensors  = "zero-tensors"
	CheckLogits       = "logits"
	CheckUntiedHead   = "bitnet.cpp untied lm_head"
	CheckHeadDim      = "bitnet.cpp head_dim"
	CheckSubNormSize  = "bitnet.cpp attn_sub_norm size"
	CheckRowWidths    = "bitnet.cpp row widths"
	CheckFloatLinears = "bitnet.cpp float linears"
)

// Checks lists every class in the order Verify runs them.
var Checks = []string{CheckMetadata, CheckInventory, CheckCodes, CheckScales, CheckLayout, CheckZeroTensors, CheckLogits,
	CheckUntiedHead, CheckHeadDim, CheckSubNormSize, CheckRowWidths, CheckFloatLinears}

// Finding is one problem with the file.
type Finding struct {
	Check string // one of the Check constants
	// Runtime is true for the bitnet.cpp classes: the file holds the HF
	// model, but bitnet.cpp will not compute what HF computes from it.
	// Otherwise the finding is a conversion error.
	Runtime bool
	Key     string // the metadata key, when the finding is about one
	Tensor  string // the GGUF tensor, when the finding is about one
	// Row and Col locate an element (HF order: row = output feature);
	// -1 when the finding is not about one element.
	Row, Col int
	Expected string
	Actual   string
	Message  string // the whole sentence, naming all of the above
}

func (f Finding) String() string { return f.Check + ": " + f.Message }

// ConversionErrors are the findings that are not Runtime.
func ConversionErrors(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if !f.Runtime {
			out = append(out, f)
		}
	}
	return out
}

// Lines joins findings one per line.
func Lines(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Reference is the HF side of a comparison.
type Reference struct {
	Name   string // the checkpoint folder, or a description of the model
	Config model.Config
	Model  *model.Model
}

// LoadReference loads an HF checkpoint folder, layer-streamed so that
// memory stays near one layer (checkpoint.Load with checkpoint.Streamed).
func LoadReference(dir string) (*Reference, error) {
	m, err := checkpoint.Load(dir, checkpoint.Streamed())
	if err != nil {
		return nil, err
	}
	return &Reference{Name: dir, Config: m.Config(), Model: m}, nil
}

// FromModel is a Reference for a model in memory. The model is read, never
// changed.
func FromModel(name string, m *model.Model) *Reference {
	return &Reference{Name: name, Config: m.Config(), Model: m}
}

// Options configure a Verifier.
type Options struct {
	// Batch is the fixed batch of the logits check; empty means
	// DefaultBatch(cfg).
	Batch model.Batch
	// Progress, when set, is told how far a long step has got, for
	// example Progress(12, 210, "ternary tensors").
	Progress func(done, total int, unit string)
}

// DefaultBatch is 2 sequences of 16 tokens (fewer when
// max_position_embeddings is smaller), token ids from a fixed seed.
func DefaultBatch(cfg model.Config) model.Batch {
	return randomBatch(cfg, 2, min(16, int(cfg.MaxPositionEmbeddings)), 1)
}

// Verifier checks one GGUF file against one Reference. Its methods may be
// called in any order; the tensor pass and the forward passes they share
// run once.
type Verifier struct {
	file *gguf.File
	ref  *Reference
	cfg  model.Config
	opts Options
	arch string // the file's general.architecture, "" when absent

	tensorsOnce sync.Once
	linears     []linearResult
	tensorsErr  error

	logitsOnce sync.Once
	logits     *logitsResult
	logitsErr  error
}

// New returns a Verifier of file against ref.
func New(file *gguf.File, ref *Reference, opts Options) *Verifier {
	v := &Verifier{file: file, ref: ref, cfg: ref.Config, opts: opts}
	if a, ok := file.Value("general.architecture"); ok && a.Type == gguf.ValueString {
		v.arch = a.String
	}
	if v.opts.Batch.B == 0 {
		v.opts.Batch = DefaultBatch(v.cfg)
	}
	return v
}

// Check runs one finding class by name.
func (v *Verifier) Check(check string) ([]Finding, error) {
	switch check {
	case CheckMetadata:
		return v.Metadata(), nil
	case CheckInventory:
		return v.Inventory(), nil
	case CheckCodes:
		return v.Codes()
	case CheckScales:
		return v.Scales()
	case CheckLayout:
		return v.Layout()
	case CheckZeroTensors:
		return v.ZeroTensors()
	case CheckLogits:
		return v.Logits()
	case CheckUntiedHead:
		return v.UntiedHead()
	case CheckHeadDim:
		return v.HeadDim(), nil
	case CheckSubNormSize:
		return v.SubNormSize(), nil
	case CheckRowWidths:
		return v.RowWidths(), nil
	case CheckFloatLinears:
		return v.FloatLinears(), nil
	}
	return nil, fmt.Errorf("verify: unknown check %q, expected one of %v", check, Checks)
}

// Verify runs every class and returns all findings, in Checks order. An
// error is a failure to run a check (an unreadable tensor), not a finding.
func (v *Verifier) Verify() ([]Finding, error) {
	var all []Finding
	for _, c := range Checks {
		fs, err := v.Check(c)
		if err != nil {
			return all, fmt.Errorf("%s: %w", c, err)
		}
		all = append(all, fs...)
	}
	return all, nil
}

// File runs every check of path against the checkpoint folder dir.
func File(path, dir string, opts Options) ([]Finding, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ref, err := LoadReference(dir)
	if err != nil {
		return nil, err
	}
	return New(f, ref, opts).Verify()
}

func (v *Verifier) progress(done, total int, unit string) {
	if v.opts.Progress != nil {
		v.opts.Progress(done, total, unit)
	}
}

// finding builds a finding without an element.
func finding(check, key, tensor, expected, actual, format string, args ...any) Finding {
	return Finding{Check: check, Runtime: strings.HasPrefix(check, "bitnet.cpp"), Key: key, Tensor: tensor, Row: -1, Col: -1,
		Expected: expected, Actual: actual, Message: fmt.Sprintf(format, args...)}
}

// fileName is the file's base name, for messages.
func (v *Verifier) fileName() string { return filepath.Base(v.file.Path) }
