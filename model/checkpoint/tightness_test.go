package checkpoint

// Tightness of the master cross-check's tolerances: each must fail an
// error just above it and pass one just below it. The tolerances are
// written out here as docs/checkpoints.md states them, not read from the
// package's constants, so loosening a constant fails these tests.

import (
	"math"
	"testing"

	"github.com/tritter-ai/conformance/internal/tensorfile"
)

const (
	documentedScaleRtol    = 1.0 / 256 // weight_scale within 2^-8 relative
	documentedCodeTieBand  = 1.0 / 128 // a code may differ within 2^-7 (relative to 0.5) of the threshold
	documentedLogitsRelL2  = 0.3
	documentedLogitsMargin = 1.5 // the logits test's factors: 1/1.5 of the bound passes, 1.5× fails
)

// TestWeightScaleToleranceIsTight scales one weight_scale by 1 + k·2^-8:
// k = 1/2 passes, k = 3/2 fails naming the tensor.
func TestWeightScaleToleranceIsTight(t *testing.T) {
	for _, k := range []float64{0.5, 1.5} {
		packed, master := masterPair(t, "autobitlinear")
		editLinears(t, packed, func(name string) bool { return name == qProj1+"_scale" }, func(tn *tensorfile.Tensor) {
			v := math.Float32frombits(uint32(tn.Data[0]) | uint32(tn.Data[1])<<8 | uint32(tn.Data[2])<<16 | uint32(tn.Data[3])<<24)
			tn.Data = tensorfile.Float32Bytes([]float32{float32(float64(v) * (1 + k*documentedScaleRtol))})
		})
		r := compareMaster(t, packed, master)
		if failed := r.Err() != nil; failed != (k > 1) {
			t.Errorf("weight_scale off by %g × 2^-8: failed=%v, want %v (%s)", k, failed, k > 1, problemsText(r))
		}
	}
}

// TestCodeTieBandIsTight flips the code of a weight whose |W/mean|W||
// lies about k band-widths from the threshold 0.5: a flip inside the band
// is a tie code (passes), one at 1.5 band-widths is a conversion bug.
func TestCodeTieBandIsTight(t *testing.T) {
	packed, master := masterPair(t, "autobitlinear")
	w, s := masterQProj1(t, master)
	// distance of |W·s| from 0.5, in units of the band's half-width.
	bands := func(i int) float64 {
		return math.Abs(math.Abs(float64(w[i])*float64(s))-0.5) / (0.5 * documentedCodeTieBand)
	}
	for _, want := range []float64{0.5, 1.5} {
		pick := -1
		for i, v := range w {
			if v > 0 && math.Abs(bands(i)-want) < 0.25 {
				pick = i
				break
			}
		}
		if pick < 0 {
			t.Fatalf("no positive weight at %g band-widths from the threshold in %s", want, qProj1)
		}
		p := packed
		if want > 1 {
			p, master = masterPair(t, "autobitlinear")
		}
		flipPositiveCode(t, p, pick)
		r := compareMaster(t, p, master)
		if failed := r.Err() != nil; failed != (want > 1) {
			t.Errorf("code flipped at %.2f band-widths from the threshold: failed=%v, want %v (%d tie codes; %s)", bands(pick), failed, want > 1, r.TieCodes, problemsText(r))
		}
	}
}

// TestMasterLogitsBoundIsTight: a relative L2 of the bound ÷ 1.5 passes,
// 1.5 × the bound fails.
func TestMasterLogitsBoundIsTight(t *testing.T) {
	for _, k := range []float64{1 / documentedLogitsMargin, documentedLogitsMargin} {
		c := LogitsComparison{RelL2: k * documentedLogitsRelL2}
		if failed := c.Err() != nil; failed != (k > 1) {
			t.Errorf("logits relL2 %g: failed=%v, want %v", c.RelL2, failed, k > 1)
		}
	}
}
