package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
)

// safetensorsMetadata is what transformers writes in every shard.
var safetensorsMetadata = map[string]string{"format": "pt"}

// shardName is the HF shard file name, 1-based.
func shardName(i, shards int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, shards)
}

// writeCheckpoint writes config.json (with quantization_mode set to mode and
// linear_class to conv's class) and the tensors: one model.safetensors when shards is 1, otherwise shards
// files of about equal size, in order, with model.safetensors.index.json.
// Each tensor's bytes are produced only when its shard is written, and one
// at a time. A model.safetensors or index left by an earlier save of the
// other form is removed, since it would shadow or contradict the new files.
func writeCheckpoint(dir string, cfg model.Config, mode string, conv model.ScaleConvention, shards int, tensors []tensorfile.Source) error {
	if mode != Online && mode != Offline {
		return fmt.Errorf("%s: mode %q, expected %q or %q", dir, mode, Online, Offline)
	}
	if shards < 1 || shards > len(tensors) {
		return fmt.Errorf("%s: %d shards requested for %d tensors, expected 1..%d", dir, shards, len(tensors), len(tensors))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return pathFirst(dir, err)
	}
	cfg.QuantizationConfig = &model.QuantizationConfig{QuantMethod: "bitnet", LinearClass: conv.LinearClassName(), QuantizationMode: mode}
	if err := writeFileAtomic(filepath.Join(dir, ConfigFile), cfg.JSON()); err != nil {
		return err
	}
	sizes := make([]int64, len(tensors))
	var total int64
	for i, t := range tensors {
		n, err := tensorfile.ByteSize(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("%s: tensor %q: %v", dir, t.Name, err)
		}
		sizes[i] = n
		total += n
	}
	weightMap := make(map[string]string, len(tensors))
	next := 0
	var written int64
	for shard := 1; shard <= shards; shard++ {
		file := SingleFile
		if shards > 1 {
			file = shardName(shard, shards)
		}
		// Close the shard once it reaches its share of the total, leaving
		// at least one tensor for each remaining shard.
		target := total * int64(shard) / int64(shards)
		first := next
		for next < len(tensors) && len(tensors)-next > shards-shard &&
			(next == first || written < target || shard == shards) {
			weightMap[tensors[next].Name] = file
			written += sizes[next]
			next++
		}
		if err := tensorfile.WriteStream(filepath.Join(dir, file), safetensorsMetadata, tensors[first:next]); err != nil {
			return err
		}
	}
	if shards == 1 {
		return removeStale(filepath.Join(dir, IndexFile))
	}
	if err := removeStale(filepath.Join(dir, SingleFile)); err != nil {
		return err
	}
	index := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, weightMap}
	data, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, IndexFile), append(data, '\n'))
}

// namedConvention is the convention a written checkpoint uses when nothing
// else decides it: bitlinear when cfg names it, else autobitlinear, the
// convention of microsoft/bitnet-b1.58-2B-4T.
func namedConvention(cfg model.Config) model.ScaleConvention {
	if cfg.QuantizationConfig != nil && cfg.QuantizationConfig.LinearClass == "bitlinear" {
		return model.ScaleDivides
	}
	return model.ScaleMultiplies
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %v", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %v", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

func removeStale(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return pathFirst(path, err)
	}
	return nil
}
