// Package checkpoint reads, checks and writes HF BitNet checkpoints: a folder
// with config.json and either model.safetensors or shards listed in
// model.safetensors.index.json, in one of two layouts:
//
//   - online (microsoft/bitnet-b1.58-2B-4T-bf16): every parameter as bf16,
//     f16 or f32 master weights under its HF name;
//   - offline (microsoft/bitnet-b1.58-2B-4T): each BitLinear weight packed as
//     uint8 [out/4, in] with a weight_scale [1] beside it, everything else as
//     bf16 or f32. quantization_config.linear_class says what weight_scale
//     is: mean|W|, multiplied (autobitlinear), or 1/mean|W|, divided
//     (bitlinear, HF's default when the key is absent).
//
// CompareMaster checks an offline checkpoint against the online master it
// was converted from.
//
// Headers are read with internal/tensorfile, which validates them before any
// tensor data is touched.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// File names HF uses in a checkpoint folder.
const (
	ConfigFile = "config.json"
	SingleFile = "model.safetensors"
	IndexFile  = "model.safetensors.index.json"
)

// The two layouts, named by config.json's quantization_config.quantization_mode.
const (
	Online  = "online"
	Offline = "offline"
)

// maxIndexBytes bounds the shard index read; a 2B model's is about 50 KB.
const maxIndexBytes = 64 << 20

// layout says which safetensors files hold the checkpoint's tensors.
type layout struct {
	dir   string
	files []string // base names, sorted
	// weightMap is the index's tensor → file map; nil for a single file.
	weightMap map[string]string
}

func (l *layout) path(file string) string { return filepath.Join(l.dir, file) }

// findLayout prefers model.safetensors, as transformers does, and otherwise
// reads the shard index. Every shard the index names must exist.
func findLayout(dir string) (*layout, error) {
	single := filepath.Join(dir, SingleFile)
	if _, err := os.Stat(single); err == nil {
		return &layout{dir: dir, files: []string{SingleFile}}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, pathFirst(single, err)
	}
	indexPath := filepath.Join(dir, IndexFile)
	info, err := os.Stat(indexPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: neither %s nor %s found", dir, SingleFile, IndexFile)
	}
	if err != nil {
		return nil, pathFirst(indexPath, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (mode %s)", indexPath, info.Mode())
	}
	if info.Size() > maxIndexBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d allowed for a shard index", indexPath, info.Size(), maxIndexBytes)
	}
	data, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, pathFirst(indexPath, err)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, fmt.Errorf("%s: invalid shard index: %v", indexPath, err)
	}
	if len(index.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: weight_map: missing or empty", indexPath)
	}
	byFile := map[string][]string{}
	for tensor, file := range index.WeightMap {
		// A shard must sit in the folder itself: a hostile index must not
		// point the reader elsewhere on the machine.
		if file == "" || file == "." || file == ".." || strings.ContainsAny(file, `/\`) {
			return nil, fmt.Errorf("%s: weight_map[%q]: shard %q is not a file name inside the folder", indexPath, tensor, file)
		}
		byFile[file] = append(byFile[file], tensor)
	}
	l := &layout{dir: dir, weightMap: index.WeightMap}
	for file := range byFile {
		l.files = append(l.files, file)
	}
	sort.Strings(l.files)
	for _, file := range l.files {
		if _, err := os.Stat(l.path(file)); err != nil {
			tensors := byFile[file]
			sort.Strings(tensors)
			problem := "is missing"
			if !errors.Is(err, fs.ErrNotExist) {
				problem = "cannot be read: " + pathFirst(file, err).Error()
			}
			return nil, fmt.Errorf("%s: shard %q, named for %d tensors (first %q), %s", indexPath, file, len(tensors), tensors[0], problem)
		}
	}
	return l, nil
}

// pathFirst starts an error with the path, without the repetition an
// *fs.PathError would add.
func pathFirst(path string, err error) error {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		err = pathErr.Err
	}
	return fmt.Errorf("%s: %w", path, err)
}
