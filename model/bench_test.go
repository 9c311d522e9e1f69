package model

import (
	"testing"

	"github.com/tritter-ai/conformance/internal/ops"
)

// layerShapes are the decoder-layer shapes of two presets, with a small
// vocabulary so that building the model costs nothing next to one layer.
var layerShapes = []struct {
	name string
	cfg  Config
}{
	{"bitnet-b1.58-2b-4t", Config{HiddenSize: 2560, IntermediateSize: 6912, NumAttentionHeads: 20, NumKeyValueHeads: 5}},
	{"tritter-70b", Config{HiddenSize: 8192, IntermediateSize: 28672, NumAttentionHeads: 64, NumKeyValueHeads: 8}},
}

// layerShapeConfig is shape's layer in a two-layer model.
func layerShapeConfig(shape Config) Config {
	cfg := shape
	cfg.NumHiddenLayers, cfg.VocabSize, cfg.MaxPositionEmbeddings = 2, 256, 16
	cfg.RopeTheta, cfg.RMSNormEps, cfg.HiddenAct = 1e4, 1e-5, "relu2"
	return cfg
}

// BenchmarkMakeLayer measures what a streamed forward pass spends on each
// layer before computing with it: regenerating its weights from their init
// streams, mean |W| and ternarisation of every linear, and packing the
// codes for the integer kernels. Run it with -benchtime 3x; a 70B layer has
// 0.87e9 weights. It makes layers 0 and 1 in turn: the layer the buffers
// already hold would be used as made.
func BenchmarkMakeLayer(b *testing.B) {
	for _, shape := range layerShapes {
		b.Run(shape.name, func(b *testing.B) {
			cfg := layerShapeConfig(shape.cfg)
			m, err := New(cfg, Options{Seed: 1, Storage: StorageBF16, Streamed: true})
			if err != nil {
				b.Fatal(err)
			}
			net, err := m.network(1, 1, ComputeKernels, ops.Rounding{})
			if err != nil {
				b.Fatal(err)
			}
			defer net.release()
			var weights int64
			for _, t := range cfg.Inventory() {
				if t.Layer == 0 { // one layer's weights
					weights += t.Elements()
				}
			}
			b.SetBytes(weights) // "MB/s" reads as millions of weights made per second
			cpu := cpuSeconds()
			b.ResetTimer()
			for i := range b.N {
				if _, err := net.layer(i % 2); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric((cpuSeconds()-cpu)/float64(b.N), "cpu-s/op")
		})
	}
}
