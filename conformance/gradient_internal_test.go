package conformance

import (
	"math"
	"path/filepath"
	"runtime"
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

// Accumulate counts NaN, ±Inf and zeros wherever they fall, and its L2 and
// max |g| match a plain float64 pass; the statistics are bit-identical under
// GOMAXPROCS 1 and 2.
func TestAccumulate(t *testing.T) {
	for _, n := range []int{0, 1, 5, accumulateBlock - 1, accumulateBlock, 3*accumulateBlock + 17} {
		grad := make([]float32, n)
		for i := range grad {
			grad[i] = float32(math.Sin(float64(i)*0.37) * float64(1+i%7))
		}
		want := GradStats{Elements: n}
		special := map[int]float32{}
		for _, i := range []int{0, n / 3, n - 1, accumulateBlock, 2*accumulateBlock + 1} {
			if i >= 0 && i < n {
				special[i] = 0
			}
		}
		for k, i := range []int{n / 2, n - 2, accumulateBlock + 3} {
			if i >= 0 && i < n {
				special[i] = [...]float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}[k]
			}
		}
		if n > 10 {
			special[n/5] = -1e30 // the largest magnitude, negative
		}
		for i, v := range special {
			grad[i] = v
		}
		var sum2 float64
		for _, g := range grad {
			v := float64(g)
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0):
				want.NonFinite++
				continue
			case g == 0:
				want.Zero++
			}
			sum2 += v * v
			want.MaxAbs = max(want.MaxAbs, math.Abs(v))
		}
		want.L2 = math.Sqrt(sum2)

		procs := runtime.GOMAXPROCS(1)
		one := Accumulate(grad)
		runtime.GOMAXPROCS(max(procs, 2))
		two := Accumulate(grad)
		runtime.GOMAXPROCS(procs)
		if one != two {
			t.Errorf("n=%d: GOMAXPROCS 1 gives %+v, 2 gives %+v", n, one, two)
		}
		got := two
		l2 := got.L2
		got.L2, want.L2 = 0, 0
		if got != want {
			t.Errorf("n=%d: got %+v, want %+v", n, got, want)
		}
		if wantL2 := math.Sqrt(sum2); math.Abs(l2-wantL2) > 1e-12*wantL2 {
			t.Errorf("n=%d: L2 %v, want %v", n, l2, wantL2)
		}
	}
}
