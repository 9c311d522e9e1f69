package model

import (
	"testing"

	"github.com/tritter-ai/conformance/internal/ops"
)

func TestQuantizeBF16MatchesFloat32(t *testing.T) {
	const out, in = 24, 40
	w := make([]float32, out*in)
	newNormalSource(3, 0, 0).fill(w, 0.02)
	w[5] = 0 // exact zero and a value on a rounding tie after scaling
	b := make([]uint16, len(w))
	f32ToBF16(b, w)
	wr := make([]float32, len(w))
	bf16ToF32(wr, b)
	got, err := quantizeBF16(b, out, in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := quantizeWeight(wr, out, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.scale != want.scale {
		t.Fatalf("scale %v, want %v", got.scale, want.scale)
	}
	gt, wt := got.t.Unpack(), want.t.Unpack()
	for i := range gt {
		if gt[i] != wt[i] {
			t.Fatalf("ternary[%d] = %d, want %d", i, gt[i], wt[i])
		}
	}
	// and the float path's weightQuant agrees with every way of
	// dequantizing the cache: from float32 or bf16 latents, or unpacked
	wq := make([]float32, len(wr))
	ops.WeightQuant(wq, wr, ops.Rounding{})
	unpacked := &ternaryWeight{t: got.t, scale: got.scale}
	for name, d := range map[string][]float32{"f32": want.dequantized(), "bf16": got.dequantized(), "unpacked": unpacked.dequantized()} {
		for i, v := range d {
			if v != wq[i] {
				t.Fatalf("%s: dequantized[%d] = %v, float path %v", name, i, v, wq[i])
			}
		}
	}
}
