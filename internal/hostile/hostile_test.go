package hostile_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tritter-ai/conformance/golden"
	"github.com/tritter-ai/conformance/internal/hostile"
	"github.com/tritter-ai/conformance/internal/tensorfile"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// Budgets every reader must meet on a hostile input of a few kilobytes (or a
// sparse file that claims gigabytes).
const (
	maxAllocBytes = 64 << 20
	maxDuration   = 10 * time.Second
)

// guarded runs read and fails the test if it panics, runs past maxDuration
// or allocates more than maxAllocBytes; it returns read's error.
func guarded(t *testing.T, read func() error) error {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("panic: %v", p)
			}
		}()
		done <- read()
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(maxDuration):
		t.Fatalf("reader still running after %v", maxDuration)
	}
	runtime.ReadMemStats(&after)
	if err != nil && strings.HasPrefix(err.Error(), "panic: ") {
		t.Fatalf("reader panicked: %v", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxAllocBytes {
		t.Errorf("reader allocated %d bytes, more than the %d budget", alloc, maxAllocBytes)
	}
	return err
}

// expectError checks that err names the path and every mention.
func expectError(t *testing.T, err error, path string, mentions ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted %s", path)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if !strings.Contains(msg, path) {
		t.Errorf("error does not name %s: %s", path, msg)
	}
	for _, m := range mentions {
		if !strings.Contains(msg, m) {
			t.Errorf("error %q does not contain %q", msg, m)
		}
	}
}

// tinyConfig is a small valid config for checkpoint folders.
func tinyConfig() model.Config {
	return model.Config{
		HiddenSize: 64, IntermediateSize: 160, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, VocabSize: 256,
		MaxPositionEmbeddings: 128, RopeTheta: 10000, RMSNormEps: 1e-5,
		HiddenAct: "relu2", TieWordEmbeddings: true,
	}
}

func syntheticCheckpoint(t *testing.T, mode string, shards int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := checkpoint.WriteSynthetic(dir, tinyConfig(), mode, shards); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSafetensorsReaders gives every reader of safetensors files each
// malformed file: as a golden case and as a checkpoint's model.safetensors.
func TestSafetensorsReaders(t *testing.T) {
	for _, tc := range hostile.SafetensorsCases() {
		t.Run(tc.Name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "case.safetensors")
			if err := os.WriteFile(path, tc.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			err := guarded(t, func() error { _, err := golden.Load(path); return err })
			expectError(t, err, path, tc.Mentions...)

			dir := syntheticCheckpoint(t, checkpoint.Online, 1)
			shard := filepath.Join(dir, checkpoint.SingleFile)
			if err := os.WriteFile(shard, tc.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			err = guarded(t, func() error { _, err := checkpoint.Inspect(dir, tinyConfig()); return err })
			expectError(t, err, shard, tc.Mentions...)
			err = guarded(t, func() error { _, err := checkpoint.Load(dir); return err })
			expectError(t, err, shard, tc.Mentions...)
		})
	}
}

// TestSparseFiles presents files that claim gigabytes: readers must check
// the claims, not read or allocate what they say.
func TestSparseFiles(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.safetensors")
	prefix := binary.LittleEndian.AppendUint64(nil, 150_000_000)
	if err := hostile.WriteSparse(huge, prefix, 4<<30); err != nil {
		t.Skipf("no sparse files here: %v", err)
	}
	for name, read := range map[string]func() error{
		"ReadHeader":  func() error { _, err := tensorfile.ReadHeader(huge); return err },
		"Open":        func() error { _, err := tensorfile.Open(huge); return err },
		"golden.Load": func() error { _, err := golden.Load(huge); return err },
	} {
		t.Run(name, func(t *testing.T) {
			expectError(t, guarded(t, read), huge, "header length", "150000000")
		})
	}

	// A header within limits whose tensor claims the whole 4 GiB data
	// section: valid, so Open must map it rather than read it.
	header := `{"w":{"dtype":"U8","shape":[4294967296],"data_offsets":[0,4294967296]}}`
	valid := filepath.Join(dir, "valid.safetensors")
	if err := hostile.WriteSparse(valid, hostile.Safetensors(header, 0), int64(8+len(header))+4<<30); err != nil {
		t.Fatal(err)
	}
	err := guarded(t, func() error {
		f, err := tensorfile.Open(valid)
		if err != nil {
			return err
		}
		defer f.Close()
		raw, err := f.Raw("w")
		if err == nil && len(raw) != 4<<30 {
			err = fmt.Errorf("raw is %d bytes", len(raw))
		}
		return err
	})
	if err != nil {
		t.Errorf("Open of a valid sparse file: %v", err)
	}

	ckpt := syntheticCheckpoint(t, checkpoint.Online, 2)
	index := filepath.Join(ckpt, checkpoint.IndexFile)
	if err := hostile.WriteSparse(index, []byte(`{"weight_map":`), 200<<20); err != nil {
		t.Fatal(err)
	}
	err = guarded(t, func() error { _, err := checkpoint.Inspect(ckpt, tinyConfig()); return err })
	expectError(t, err, index, "allowed for a shard index")
}

// TestCheckpointFolders covers damage to a checkpoint folder beyond its
// safetensors headers.
func TestCheckpointFolders(t *testing.T) {
	official := model.Config{
		HiddenSize: 2560, IntermediateSize: 6912, NumHiddenLayers: 30,
		NumAttentionHeads: 20, NumKeyValueHeads: 5, HeadDimension: 128, VocabSize: 128256,
		MaxPositionEmbeddings: 4096, RopeTheta: 500000, RMSNormEps: 1e-5,
		HiddenAct: "relu2", TieWordEmbeddings: true,
	}
	for _, tc := range []struct {
		name     string
		shards   int
		damage   func(t *testing.T, dir string) string // returns the path the error must name
		mentions []string
	}{
		{"config claims the 2B model over tiny tensors", 1, func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, checkpoint.ConfigFile), official.JSON())
			return "model.embed_tokens.weight: shape [256,64], expected [128256,2560]"
		}, []string{"model.safetensors"}},
		{"config with absurd layer count", 1, func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, checkpoint.ConfigFile), []byte(`{"hidden_size":64,"intermediate_size":160,"num_hidden_layers":1000000000,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":256,"max_position_embeddings":128,"rope_theta":10000,"rms_norm_eps":1e-5,"hidden_act":"relu2"}`))
			return filepath.Join(dir, checkpoint.ConfigFile)
		}, []string{"num_hidden_layers"}},
		{"config that is not JSON", 1, func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, checkpoint.ConfigFile), []byte("{"))
			return filepath.Join(dir, checkpoint.ConfigFile)
		}, []string{"invalid JSON"}},
		{"index that is not JSON", 2, func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, checkpoint.IndexFile), []byte(`{"weight_map":[`))
			return filepath.Join(dir, checkpoint.IndexFile)
		}, []string{"invalid shard index"}},
		{"index pointing outside the folder", 2, func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, checkpoint.IndexFile), []byte(`{"weight_map":{"model.norm.weight":"/etc/passwd"}}`))
			return filepath.Join(dir, checkpoint.IndexFile)
		}, []string{`weight_map["model.norm.weight"]`, "/etc/passwd"}},
		{"missing shard", 2, func(t *testing.T, dir string) string {
			if err := checkpoint.RemoveFile(dir, "model-00002-of-00002.safetensors"); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, checkpoint.IndexFile)
		}, []string{`shard "model-00002-of-00002.safetensors"`, "missing"}},
		{"shard that is a directory", 2, func(t *testing.T, dir string) string {
			shard := filepath.Join(dir, "model-00001-of-00002.safetensors")
			os.Remove(shard)
			if err := os.Mkdir(shard, 0o755); err != nil {
				t.Fatal(err)
			}
			return shard
		}, []string{"not a regular file"}},
		{"model.safetensors that is a FIFO", 1, func(t *testing.T, dir string) string {
			single := filepath.Join(dir, checkpoint.SingleFile)
			os.Remove(single)
			if err := syscall.Mkfifo(single, 0o644); err != nil {
				t.Skipf("no FIFOs here: %v", err)
			}
			return single
		}, []string{"not a regular file"}},
		{"model.safetensors that is a symlink loop", 1, func(t *testing.T, dir string) string {
			single := filepath.Join(dir, checkpoint.SingleFile)
			os.Remove(single)
			if err := os.Symlink(single, single); err != nil {
				t.Skipf("no symlinks here: %v", err)
			}
			return single
		}, []string{"symbolic links"}},
		{"NaN weight_scale", 1, func(t *testing.T, dir string) string {
			name := "model.layers.0.self_attn.o_proj.weight_scale"
			if err := checkpoint.EditTensors(dir, func(_ string, ts []tensorfile.Tensor) []tensorfile.Tensor {
				for _, t := range ts {
					if t.Name == name {
						copy(t.Data, tensorfile.BF16Bytes([]float32{float32(math.NaN())}))
					}
				}
				return ts
			}); err != nil {
				t.Fatal(err)
			}
			return name
		}, []string{"weight_scale", "NaN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode := checkpoint.Online
			if strings.Contains(tc.name, "weight_scale") {
				mode = checkpoint.Offline
			}
			dir := syntheticCheckpoint(t, mode, tc.shards)
			names := tc.damage(t, dir)
			err := guarded(t, func() error { _, err := checkpoint.Load(dir); return err })
			expectError(t, err, names, tc.mentions...)
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
