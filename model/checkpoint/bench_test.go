package checkpoint

import (
	"path/filepath"
	"testing"

	"github.com/tritter-ai/conformance/model"
)

// benchConfig is a 4-layer model of about 110M parameters: large enough for
// conversion costs to dominate, small enough for the 2-core test machine.
func benchConfig() model.Config {
	return model.Config{
		HiddenSize: 1024, IntermediateSize: 2752, NumHiddenLayers: 4,
		NumAttentionHeads: 16, NumKeyValueHeads: 4, VocabSize: 32000,
		MaxPositionEmbeddings: 512, RopeTheta: 500000, RMSNormEps: 1e-5,
		HiddenAct: "relu2", TieWordEmbeddings: true,
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, mode := range []string{Online, Offline} {
		b.Run(mode, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "ckpt")
			if err := WriteSynthetic(dir, benchConfig(), mode, 2); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := Load(dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for range b.N {
		if _, err := model.New(benchConfig(), model.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
