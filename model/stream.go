package model

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/tritter-ai/conformance/kernels"
)

// A streamed model (Options.Streamed) stores no decoder layer. Random
// initialisation is a pure function of (seed, tensor, chunk), so each
// layer's weights are regenerated, bit for bit as New would store them,
// into buffers that one network call reuses from layer to layer, and are
// quantized there exactly as the resident model quantizes its own. The
// memory for weights is then the embedding, the final norm and the lm_head
// plus one layer, and the forward pass keeps only the layer-boundary
// activations; the gradient pass recomputes each layer's forward from its
// saved input before its backward (network.checkpoint).
//
// A streamed model built with a TensorSource (Options.Source) reads each
// layer tensor from the source instead, such as a checkpoint's mapped files
// (checkpoint.Load with checkpoint.Streamed), into the same buffers and
// with the same rounding to the model's storage as Param.Set or
// Model.SetOffline would apply, so its results are bit-identical to those
// of the model loaded resident from the same source.

// A TensorSource supplies the decoder-layer tensors of a streamed model each
// time their layer runs. Its methods may be called from several goroutines
// at once. Tensors are looked up by HF name and have the inventory's shape.
type TensorSource interface {
	// Offline returns a linear's ternary codes and weight_scale with their
	// convention, as Model.SetOffline takes them; ok is false when the
	// source holds the linear as latent values.
	Offline(name string) (w *kernels.Ternary, weightScale float32, conv ScaleConvention, ok bool, err error)
	// Latent writes the tensor's values into dst, whose length is the
	// tensor's element count.
	Latent(name string, dst []float32) error
}

// lazyInit says how to materialise a streamed layer tensor: from its init
// stream, or from source when that is set.
type lazyInit struct {
	seed    uint64
	std     float64
	stream  int     // the tensor's position in the inventory: its init stream
	storage Storage // StorageF32 or StorageBF16, as New would store it
	source  TensorSource
}

// values returns p's values as float32.
func (l *lazyInit) values(p *Param) []float32 {
	tmp := &Param{spec: p.spec, shape: p.shape}
	if err := l.fill(tmp, nil); err != nil {
		// A source was validated when the model was built; failing now
		// means it broke its contract (a file closed under it).
		panic(fmt.Sprintf("model: streamed tensor %s: %v", p.spec.Name, err))
	}
	return tmp.Float32()
}

// fill makes dst, a parameter of the tensor's spec and shape, hold the
// tensor as the resident model would store it: regenerated from its init
// stream, or read from the source (an offline linear, or latent values
// rounded to l.storage as Param.Set rounds them). Storage dst already has
// is reused; scratch (nil: allocate) holds a source's float32 values on
// their way to bf16.
func (l *lazyInit) fill(dst *Param, scratch []float32) error {
	name := dst.spec.Name
	dst.lazy, dst.tern = nil, nil
	if l.source == nil {
		if err := dst.ensureStorage(l.storage); err != nil {
			return err
		}
		initTensors([]*Param{dst}, []int{l.stream}, l.seed, l.std)
		return nil
	}
	if dst.spec.Kind == KindLinear {
		w, scale, conv, ok, err := l.source.Offline(name)
		if err != nil {
			return err
		}
		if ok {
			tw, err := offlineWeight(dst, w, scale, conv)
			if err != nil {
				return err
			}
			dst.f32, dst.bf16, dst.tern = nil, nil, tw
			releaseStorage(dst)
			return nil
		}
	}
	if err := dst.ensureStorage(l.storage); err != nil {
		return err
	}
	if dst.f32 != nil {
		return l.source.Latent(name, dst.f32)
	}
	n := len(dst.bf16)
	if len(scratch) < n {
		scratch = make([]float32, n)
	}
	if err := l.source.Latent(name, scratch[:n]); err != nil {
		return err
	}
	f32ToBF16(dst.bf16, scratch[:n])
	return nil
}

// ensureStorage gives p storage for its shape in st (StorageF32 or
// StorageBF16), keeping what it has when that fits; the values are left as
// they are.
func (p *Param) ensureStorage(st Storage) error {
	n := Elements(p.shape)
	if st == StorageBF16 {
		if p.bf16 != nil && len(p.bf16) == n {
			return nil
		}
		p.f32, p.bf16 = nil, nil
		releaseStorage(p)
		var err error
		if p.bf16, err = allocBF16(p, n); err != nil {
			return fmt.Errorf("%s: %v", p.spec.Name, err)
		}
		return nil
	}
	if p.f32 != nil && len(p.f32) == n {
		return nil
	}
	p.bf16 = nil
	releaseStorage(p)
	p.f32 = make([]float32, n)
	return nil
}

// layerStream lends buffer sets to the network calls of a streamed model.
// A call takes one set and gives it back when it is done, so concurrent
// calls never share a set and consecutive calls reuse the same memory
// instead of faulting in fresh pages.
type layerStream struct {
	m    *Model
	mu   sync.Mutex
	free []*layerBuffers
}

func (s *layerStream) get() *layerBuffers {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.free); n > 0 {
		b := s.free[n-1]
		s.free = s.free[:n-1]
		return b
	}
	return &layerBuffers{layer: -1}
}

func (s *layerStream) put(b *layerBuffers) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = append(s.free, b)
}

// layerBuffers hold one layer's materialised weights: one parameter per
// slot, whose storage the next layer overwrites, and the scratch space for
// quantizing them.
type layerBuffers struct {
	slots [slotsPerLayer]*Param
	tern  []int8
	f32   []float32 // a source's values on their way to bf16 storage
	// layer is the layer the slots hold, or -1. The gradient pass asks
	// for the last layer again as soon as the forward pass is done with
	// it: it is used as made, quantized weights included.
	layer int
}

// load materialises layer i of m and returns its parameters by slot. A
// layer tensor that was Set or made offline since New is used as stored.
// The previous layer's weights must no longer be in use. The tensors
// regenerated from their init streams are made in one initTensors call,
// so that all the threads share all of the layer's chunks.
func (b *layerBuffers) load(m *Model, i int) ([slotsPerLayer]*Param, error) {
	var ps [slotsPerLayer]*Param
	if i == b.layer {
		// Regenerating or reading a tensor again gives the same values; a
		// tensor Set since is used as stored.
		for slot := range ps {
			ps[slot] = b.slots[slot]
			if p := m.byName[layerName(i, slot)]; p.lazy == nil {
				ps[slot] = p
			}
		}
		return ps, nil
	}
	b.layer = -1
	// The previous layer's packed weights and temporaries are garbage now.
	// Collecting them before this layer's are made keeps the Go heap at
	// its live size: left to itself, the garbage of a pass over every
	// layer would grow the heap to twice the live size before a
	// collection (GOGC=100), which measured 1.8 GiB over the estimate at
	// 13B. The heap holds a few large pointer-free buffers, so a
	// collection costs well under a millisecond, and the freed memory is
	// reused by the next layer instead of fresh pages being faulted in.
	runtime.GC()
	var regenerate []*Param
	var streams []int
	var init *lazyInit
	for slot := range ps {
		p := m.byName[layerName(i, slot)]
		if p.lazy == nil {
			ps[slot] = p
			continue
		}
		dst := b.slots[slot]
		if dst == nil {
			dst = &Param{}
			b.slots[slot] = dst
		}
		dst.spec, dst.shape = p.spec, p.shape
		n := Elements(p.shape)
		switch {
		case p.lazy.source == nil:
			dst.lazy, dst.tern = nil, nil
			if err := dst.ensureStorage(p.lazy.storage); err != nil {
				return ps, err
			}
			regenerate, streams, init = append(regenerate, dst), append(streams, p.lazy.stream), p.lazy
		default:
			if p.lazy.storage == StorageBF16 && len(b.f32) < n {
				b.f32 = make([]float32, n)
			}
			if err := p.lazy.fill(dst, b.f32); err != nil {
				return ps, err
			}
		}
		if p.spec.Kind == KindLinear && dst.tern == nil && dst.f32 != nil && len(b.tern) < n { // bf16 packs without scratch
			b.tern = make([]int8, n)
		}
		ps[slot] = dst
	}
	if len(regenerate) > 0 {
		initTensors(regenerate, streams, init.seed, init.std)
	}
	b.layer = i
	return ps, nil
}

// Streamed reports whether the model regenerates its layers when they run
// (Options.Streamed) instead of storing them.
func (m *Model) Streamed() bool { return m.stream != nil }
