package checkpoint

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
)

// Problem is one tensor that does not match the expected inventory.
type Problem struct {
	Tensor  string // HF tensor name
	File    string // safetensors file (base name) involved, or "" when none holds it
	Message string // what is wrong, with the expected and the actual value
}

// String formats the problem as one line, for example
// `model.layers.0.mlp.up_proj.weight: shape [6912,2560], expected [4096,2560] (model.safetensors)`.
func (p Problem) String() string {
	if p.File == "" {
		return p.Tensor + ": " + p.Message
	}
	return p.Tensor + ": " + p.Message + " (" + p.File + ")"
}

// Report is the result of inspecting a checkpoint folder.
type Report struct {
	Dir    string
	Mode   string       // "online" or "offline", from the checkpoint's quantization_config
	Config model.Config // the checkpoint's own config.json
	Files  []string     // safetensors files read, base names, sorted
	// Problems lists tensors held twice or misplaced against the shard
	// index, then inventory tensors in inventory order, then unexpected
	// tensors by name.
	Problems    []Problem
	TensorCount int // tensors found across all files
}

// Err is nil when there are no problems, and otherwise lists every problem.
func (r *Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	lines := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		lines[i] = p.String()
	}
	return fmt.Errorf("%s: %d tensor problems:\n%s", r.Dir, len(r.Problems), strings.Join(lines, "\n"))
}

// expectedTensor is one tensor a checkpoint must hold.
type expectedTensor struct {
	name   string
	shape  []int64
	dtypes []string // any of these is accepted
	spec   model.TensorSpec
}

// floatDTypes hold master weights, norms and scales.
var floatDTypes = []string{"BF16", "F32", "F16"}

// expectedTensors lists what a checkpoint of cfg holds in the given mode, in
// inventory order.
func expectedTensors(cfg model.Config, mode string) []expectedTensor {
	var out []expectedTensor
	for _, spec := range cfg.Inventory() {
		if mode == Offline && spec.Kind == model.KindLinear {
			out = append(out,
				expectedTensor{spec.Name, []int64{spec.Shape[0] / 4, spec.Shape[1]}, []string{"U8"}, spec},
				expectedTensor{scaleName(spec.Name), []int64{1}, floatDTypes, spec},
			)
			continue
		}
		out = append(out, expectedTensor{spec.Name, spec.Shape, floatDTypes, spec})
	}
	return out
}

// scaleName is the weight_scale tensor beside a linear weight:
// "….q_proj.weight" → "….q_proj.weight_scale".
func scaleName(weight string) string { return weight + "_scale" }

// located is a tensor found in one of the checkpoint's files.
type located struct {
	info tensorfile.Info
	file string
}

// Inspect checks a checkpoint folder against the inventory of expected
// without reading any tensor data: every tensor's presence, shape and dtype,
// for the layout (online or offline) its config.json declares, and the
// consistency of a shard index with the shards. Problems with tensors are
// listed in the report; an unreadable config, index or header, or a shard the
// index names but the folder lacks, is an error.
func Inspect(dir string, expected model.Config) (*Report, error) {
	r, _, _, err := inspect(dir, expected)
	return r, err
}

// inspect is Inspect, also returning the layout and where each tensor is.
func inspect(dir string, expected model.Config) (*Report, *layout, map[string]located, error) {
	cfg, err := model.LoadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, nil, nil, err
	}
	if err := expected.Validate(); err != nil {
		return nil, nil, nil, fmt.Errorf("expected config: %w", err)
	}
	lay, err := findLayout(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	r := &Report{Dir: dir, Mode: cfg.QuantizationMode(), Config: cfg, Files: lay.files}
	found, err := readHeaders(lay, r)
	if err != nil {
		return nil, nil, nil, err
	}
	declared := fmt.Sprintf("%s sets quantization_mode %q", ConfigFile, r.Mode)
	if q := cfg.QuantizationConfig; q != nil && q.QuantizationMode == "" {
		declared = fmt.Sprintf("%s's quantization_config leaves quantization_mode unset, and HF's default is %q", ConfigFile, r.Mode)
	}
	checkInventory(r, lay, found, expectedTensors(expected, r.Mode), declared)
	return r, lay, found, nil
}

// readHeaders reads every file's header and returns where each tensor is,
// adding a problem for a tensor held twice or misplaced against the index.
func readHeaders(lay *layout, r *Report) (map[string]located, error) {
	found := map[string]located{}
	for _, file := range lay.files {
		h, err := tensorfile.ReadHeader(lay.path(file))
		if err != nil {
			return nil, err
		}
		for _, info := range h.Tensors {
			r.TensorCount++
			if prev, dup := found[info.Name]; dup {
				r.Problems = append(r.Problems, Problem{info.Name, file, "also present in " + prev.file})
				continue
			}
			found[info.Name] = located{info, file}
			if lay.weightMap == nil {
				continue
			}
			switch listed, ok := lay.weightMap[info.Name]; {
			case !ok:
				r.Problems = append(r.Problems, Problem{info.Name, file, "not listed in the " + IndexFile + " weight_map"})
			case listed != file:
				r.Problems = append(r.Problems, Problem{info.Name, file, fmt.Sprintf("%s weight_map lists it in %s", IndexFile, listed)})
			}
		}
	}
	return found, nil
}

// checkInventory compares the found tensors with the expected ones.
// declared says where the layout comes from, for otherLayout's messages.
func checkInventory(r *Report, lay *layout, found map[string]located, expected []expectedTensor, declared string) {
	wanted := make(map[string]bool, len(expected))
	for _, e := range expected {
		wanted[e.name] = true
		t, ok := found[e.name]
		if !ok {
			msg := fmt.Sprintf("missing, expected %s %s", strings.Join(e.dtypes, "/"), tensorfile.ShapeString(e.shape))
			file := ""
			if listed, inIndex := lay.weightMap[e.name]; inIndex {
				msg += ", though the " + IndexFile + " weight_map lists it in this file"
				file = listed
			}
			r.Problems = append(r.Problems, Problem{e.name, file, msg})
			continue
		}
		if msg := otherLayout(e, t.info, r.Mode, declared); msg != "" {
			r.Problems = append(r.Problems, Problem{e.name, t.file, msg})
			continue
		}
		if !slices.Equal(t.info.Shape, e.shape) {
			r.Problems = append(r.Problems, Problem{e.name, t.file, fmt.Sprintf("shape %s, expected %s", tensorfile.ShapeString(t.info.Shape), tensorfile.ShapeString(e.shape))})
		}
		if !slices.Contains(e.dtypes, t.info.DType) {
			r.Problems = append(r.Problems, Problem{e.name, t.file, fmt.Sprintf("dtype %s, expected %s", t.info.DType, strings.Join(e.dtypes, " or "))})
		}
	}
	var unexpected []string
	for name := range found {
		if !wanted[name] {
			unexpected = append(unexpected, name)
		}
	}
	sort.Strings(unexpected)
	for _, name := range unexpected {
		t := found[name]
		r.Problems = append(r.Problems, Problem{name, t.file, fmt.Sprintf("unexpected tensor (%s %s) for a %s checkpoint of this config", t.info.DType, tensorfile.ShapeString(t.info.Shape), r.Mode)})
	}
	// Index entries that no file holds and that the inventory does not
	// expect would otherwise go unreported.
	var stale []string
	for name := range lay.weightMap {
		if _, ok := found[name]; !ok && !wanted[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	for _, name := range stale {
		r.Problems = append(r.Problems, Problem{name, lay.weightMap[name], "listed in the " + IndexFile + " weight_map but absent from this file, and not expected"})
	}
}

// otherLayout explains a linear weight stored in the other layout than the
// one config.json declares, which would otherwise show up as a puzzling
// shape and dtype mismatch.
func otherLayout(e expectedTensor, got tensorfile.Info, mode, declared string) string {
	if e.spec.Kind != model.KindLinear || e.name != e.spec.Name {
		return ""
	}
	packed := []int64{e.spec.Shape[0] / 4, e.spec.Shape[1]}
	switch {
	case mode == Online && got.DType == "U8" && slices.Equal(got.Shape, packed):
		return fmt.Sprintf("U8 %s is the offline packed layout, but %s", tensorfile.ShapeString(got.Shape), declared)
	case mode == Offline && slices.Contains(floatDTypes, got.DType) && slices.Equal(got.Shape, e.spec.Shape):
		return fmt.Sprintf("%s %s is an online master weight, but %s", got.DType, tensorfile.ShapeString(got.Shape), declared)
	}
	return ""
}
