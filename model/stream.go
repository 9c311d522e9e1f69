package model

import (
	"fmt"
	"runtime"
	"slices"
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

// lazyInit says how to regenerate a streamed layer tensor: from its init
// stream, or from source when that is set.
type lazyInit struct {
	seed    uint64
	std     float64
	stream  int     // the tensor's position in the inventory: its init stream
	storage Storage // StorageF32 or StorageBF16, as New would store it
	source  TensorSource
}

// values regenerates p's values as float32.
func (l *lazyInit) values(p *Param) []float32 {
	n := Elements(p.shape)
	if l.source != nil {
		tmp := &Param{spec: p.spec, shape: p.shape}
		if err := l.read(tmp, nil); err != nil {
			// The source was validated when the model was built; failing
			// now means it broke its contract (a file closed under it).
			panic(fmt.Sprintf("model: streamed tensor %s: %v", p.spec.Name, err))
		}
		if tmp.tern != nil {
			return tmp.tern.dequantized()
		}
		if tmp.f32 != nil {
			return tmp.f32
		}
		out := make([]float32, n)
		bf16ToF32(out, tmp.bf16)
		return out
	}
	tmp := &Param{spec: p.spec, shape: p.shape}
	if l.storage == StorageBF16 {
		tmp.bf16 = make([]uint16, n)
	} else {
		tmp.f32 = make([]float32, n)
	}
	initTensors([]*Param{tmp}, []int{l.stream}, l.seed, l.std)
	if tmp.f32 != nil {
		return tmp.f32
	}
	out := make([]float32, n)
	bf16ToF32(out, tmp.bf16)
	return out
}

// read fills dst, a parameter of the tensor's spec and shape, from the
// source: as an offline linear, or as latent values in l.storage, rounded
// as Param.Set rounds them. Existing storage of the right size is reused;
// scratch (nil: allocate) holds float32 values on their way to bf16.
func (l *lazyInit) read(dst *Param, scratch []float32) error {
	name := dst.spec.Name
	dst.lazy, dst.tern = nil, nil
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
	n := Elements(dst.shape)
	if l.storage != StorageBF16 {
		if len(dst.f32) != n {
			dst.f32, dst.bf16 = make([]float32, n), nil
			releaseStorage(dst)
		}
		return l.source.Latent(name, dst.f32)
	}
	if len(dst.bf16) != n {
		dst.f32, dst.bf16 = nil, nil
		releaseStorage(dst)
		var err error
		if dst.bf16, err = allocBF16(dst, n); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
	}
	if len(scratch) < n {
		scratch = make([]float32, n)
	}
	if err := l.source.Latent(name, scratch[:n]); err != nil {
		return err
	}
	f32ToBF16(dst.bf16, scratch[:n])
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
	return &layerBuffers{}
}

func (s *layerStream) put(b *layerBuffers) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free = append(s.free, b)
}

// layerBuffers hold one layer's regenerated weights: one parameter per
// slot, whose storage the next layer overwrites, and the scratch space for
// quantizing them.
type layerBuffers struct {
	slots [slotsPerLayer]*Param
	tern  []int8
	f32   []float32 // a source's values on their way to bf16 storage
}

// load materialises layer i of m and returns its parameters by slot. A
// layer tensor that was Set or made offline since New is used as stored.
// The previous layer's weights must no longer be in use.
func (b *layerBuffers) load(m *Model, i int) ([slotsPerLayer]*Param, error) {
	// The previous layer's packed weights and temporaries are garbage now.
	// Collecting them before this layer's are made keeps the Go heap at
	// its live size: left to itself, the garbage of a pass over every
	// layer would grow the heap to twice the live size before a
	// collection (GOGC=100), which measured 1.8 GiB over the estimate at
	// 13B. The heap holds a few large pointer-free buffers, so a
	// collection costs well under a millisecond, and the freed memory is
	// reused by the next layer instead of fresh pages being faulted in.
	runtime.GC()
	var ps [slotsPerLayer]*Param
	var todo []*Param
	var streams []int
	var init *lazyInit
	for slot := range ps {
		p := m.byName[layerName(i, slot)]
		if p.lazy == nil {
			ps[slot] = p
			continue
		}
		if p.lazy.source != nil {
			dst := b.slots[slot]
			if dst == nil {
				dst = &Param{}
				b.slots[slot] = dst
			}
			dst.spec, dst.shape = p.spec, p.shape
			if p.lazy.storage == StorageBF16 && len(b.f32) < Elements(p.shape) {
				b.f32 = make([]float32, Elements(p.shape))
			}
			if err := p.lazy.read(dst, b.f32); err != nil {
				return ps, err
			}
			if p.spec.Kind == KindLinear && dst.tern == nil && len(b.tern) < Elements(p.shape) {
				b.tern = make([]int8, Elements(p.shape))
			}
			ps[slot] = dst
			continue
		}
		init = p.lazy
		dst := b.slots[slot]
		if dst == nil || !slices.Equal(dst.shape, p.shape) {
			dst = &Param{shape: p.shape}
			n := Elements(p.shape)
			if p.lazy.storage == StorageBF16 {
				var err error
				if dst.bf16, err = allocBF16(dst, n); err != nil {
					return ps, fmt.Errorf("%s: %v", p.spec.Name, err)
				}
			} else {
				dst.f32 = make([]float32, n)
			}
			b.slots[slot] = dst
		}
		dst.spec, dst.tern = p.spec, nil
		if p.spec.Kind == KindLinear && len(b.tern) < Elements(p.shape) {
			b.tern = make([]int8, Elements(p.shape))
		}
		ps[slot] = dst
		todo = append(todo, dst)
		streams = append(streams, p.lazy.stream)
	}
	if init != nil {
		initTensors(todo, streams, init.seed, init.std)
	}
	return ps, nil
}

// Streamed reports whether the model regenerates its layers when they run
// (Options.Streamed) instead of storing them.
func (m *Model) Streamed() bool { return m.stream != nil }
