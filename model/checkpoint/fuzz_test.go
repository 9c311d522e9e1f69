package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tritter-ai/conformance/model"
)

// fuzzConfig is the smallest config both layouts accept: every linear's
// out_features is a multiple of 4, as offline packing needs.
var fuzzConfig = model.Config{
	HiddenSize: 8, IntermediateSize: 12, NumHiddenLayers: 1,
	NumAttentionHeads: 2, NumKeyValueHeads: 1, VocabSize: 11,
	MaxPositionEmbeddings: 16, RopeTheta: 10000, RMSNormEps: 1e-5,
	HiddenAct: "relu2", TieWordEmbeddings: true,
}

// FuzzCheckpoint fuzzes the two JSON files of a sharded checkpoint folder,
// config.json and the shard index, in front of fixed valid shards of
// fuzzConfig in either layout. Inspect and Load may reject the folder, with
// an error that names it, but must not panic, and what they accept must
// match the shards; a streamed Load accepts what Load accepts. Each worker writes its two folders once and per input
// overwrites only the JSON files, in place (see overwrite).
func FuzzCheckpoint(f *testing.F) {
	dirs := map[bool]string{}
	for _, offline := range []bool{false, true} {
		mode := Online
		if offline {
			mode = Offline
		}
		dir := filepath.Join(f.TempDir(), mode)
		if err := WriteSynthetic(dir, fuzzConfig, mode, 2); err != nil {
			f.Fatal(err)
		}
		config, err := os.ReadFile(filepath.Join(dir, ConfigFile))
		if err != nil {
			f.Fatal(err)
		}
		index, err := os.ReadFile(filepath.Join(dir, IndexFile))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(offline, config, index)
		dirs[offline] = dir
	}
	f.Fuzz(func(t *testing.T, offline bool, config, index []byte) {
		dir := dirs[offline]
		for file, data := range map[string][]byte{ConfigFile: config, IndexFile: index} {
			if err := overwrite(filepath.Join(dir, file), data); err != nil {
				t.Fatal(err)
			}
		}
		// Load inspects the folder against its own config first, so a folder
		// Inspect rejects is one Load rejects too.
		r, err := Inspect(dir, fuzzConfig)
		if err != nil {
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("Inspect error %q does not name the folder", err)
			}
			return
		}
		if r.TensorCount == 0 {
			t.Fatalf("Inspect found no tensors in the shards of %s", dir)
		}
		m, err := Load(dir)
		if err != nil {
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("Load error %q does not name the folder", err)
			}
			return
		}
		if m.ParamCount() != fuzzConfig.ParamCount() {
			t.Fatalf("loaded %d parameters, the shards hold %d", m.ParamCount(), fuzzConfig.ParamCount())
		}
		// A streamed load checks the same things, so it accepts the folder.
		s, err := Load(dir, Streamed())
		if err != nil {
			t.Fatalf("Load accepted the folder, Load with Streamed rejected it: %v", err)
		}
		if s.ParamCount() != m.ParamCount() {
			t.Fatalf("streamed load has %d parameters, resident %d", s.ParamCount(), m.ParamCount())
		}
	})
}

// overwrite replaces a file's contents without truncating it to zero first:
// on ext4, closing a file that was truncated to zero and rewritten flushes
// it to disk (auto_da_alloc), which costs about a millisecond per input
// where an in-place write costs tens of microseconds.
func overwrite(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return err
}
