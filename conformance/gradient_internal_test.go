package conformance

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tritter-ai/conformance/conformance/presets"
	"github.com/tritter-ai/conformance/kernels"
	"github.com/tritter-ai/conformance/model"
	"github.com/tritter-ai/conformance/model/checkpoint"
)

// An offline linear steps from a latent whose online quantization is
// exactly its codes, with its effective scale: a step of zero changes
// nothing but rounding. (The dequantized codes·scale would quantize to
// scale·(nonzero fraction): a one-step SGD spec on offline checkpoints
// then rescaled every layer and could raise the loss, which
// make checkpoint-sweep found on tiny models.)
func TestOfflineLatentQuantizesToItsCodes(t *testing.T) {
	all, err := presets.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, linearClass := range []string{"autobitlinear", "bitlinear"} {
		cfg := all["tiny-gqa-untied"].Config
		cfg.QuantizationConfig = &model.QuantizationConfig{QuantMethod: "bitnet", LinearClass: linearClass, QuantizationMode: checkpoint.Online}
		m, err := model.New(cfg, model.Options{Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), linearClass)
		if err := checkpoint.Save(m, dir, checkpoint.Offline, 1); err != nil {
			t.Fatal(err)
		}
		packed, err := checkpoint.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		linears := 0
		for _, p := range packed.Params() {
			tern, ws, conv, ok := p.Offline()
			if !ok {
				continue
			}
			linears++
			effective := float64(ws)
			if conv == model.ScaleDivides {
				effective = 1 / effective
			}
			latent := equivalentLatent(p)
			s := kernels.WeightScale(latent)
			codes := make([]int8, len(latent))
			kernels.Ternarize(codes, latent, s)
			if !slices.Equal(codes, tern.Unpack()) {
				t.Errorf("%s %s: online quantization of the step's latent changes the codes", linearClass, p.Name())
			}
			// mean|W| of the latent sums n magnitudes: within the pairwise
			// summation bound (⌈log2 n⌉+3)·u of the effective scale.
			n := float64(len(latent))
			bound := (math.Ceil(math.Log2(n)) + 3) * 0x1p-24
			if got := 1 / float64(s); math.Abs(got-effective) > bound*effective {
				t.Errorf("%s %s: the step's latent quantizes to scale %g, the checkpoint's effective scale is %g (relative %.3g > %.3g)",
					linearClass, p.Name(), got, effective, math.Abs(got-effective)/effective, bound)
			}
		}
		if linears == 0 {
			t.Fatalf("%s: the offline checkpoint has no offline linear", linearClass)
		}
	}
}
