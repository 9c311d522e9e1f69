package model

import (
	"hash/fnv"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"unsafe"
)

// gradDigest is the exact content of every gradient, kept as one hash per
// parameter: bit-identical gradients give equal digests, so the
// statistics computed from them are bit-identical too.
type gradDigest struct {
	loss   float64
	logits []float32
	hashes map[string]uint64
}

func digest(t *testing.T, m *Model, b Batch) gradDigest {
	t.Helper()
	out, err := m.Forward(b, ForwardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := gradDigest{logits: out.Logits.Data, hashes: map[string]uint64{}}
	res, err := m.Gradients(b, GradOptions{Visit: func(name string, g []float32) {
		h := fnv.New64a()
		if len(g) > 0 {
			h.Write(unsafe.Slice((*byte)(unsafe.Pointer(&g[0])), 4*len(g)))
		}
		d.hashes[name] = h.Sum64()
	}})
	if err != nil {
		t.Fatal(err)
	}
	d.loss = res.Loss
	return d
}

// On the full-scale preset (2B-4T unless CONFORMANCE_FULL_SCALE_PRESET), the
// layer-streamed model at GOMAXPROCS 1 gives bit for bit the logits, loss
// and gradients of the resident model at the default GOMAXPROCS. The two
// models are built one after the other, so the peak is the resident one.
func TestFullScaleStreamedMatchesResident(t *testing.T) {
	resident := fullScaleModel(t)
	cfg := resident.Config()
	b := fullScaleBatch(cfg)
	ph := newPhase(t)
	want := digest(t, resident, b)
	ph.done("resident forward + gradients")
	resident = nil
	runtime.GC()
	debug.FreeOSMemory()

	streamed, err := New(cfg, Options{Seed: 1, Streamed: true})
	if err != nil {
		t.Fatal(err)
	}
	old := runtime.GOMAXPROCS(1)
	got := digest(t, streamed, b)
	runtime.GOMAXPROCS(old)
	ph.done("streamed forward + gradients, GOMAXPROCS 1")
	if d := firstBitDiff(got.logits, want.logits); d >= 0 {
		t.Errorf("streamed logits differ at %d: %v, resident %v", d, got.logits[d], want.logits[d])
	}
	if math.Float64bits(got.loss) != math.Float64bits(want.loss) {
		t.Errorf("streamed loss %v, resident %v", got.loss, want.loss)
	}
	if len(got.hashes) != len(want.hashes) {
		t.Errorf("streamed model visited %d gradients, resident %d", len(got.hashes), len(want.hashes))
	}
	for name, h := range want.hashes {
		if got.hashes[name] != h {
			t.Errorf("gradient of %s: streamed differs from resident", name)
		}
	}
}
