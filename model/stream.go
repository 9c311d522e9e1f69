package model

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
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

// lazyInit says how to regenerate a streamed layer tensor.
type lazyInit struct {
	seed    uint64
	std     float64
	stream  int     // the tensor's position in the inventory: its init stream
	storage Storage // StorageF32 or StorageBF16, as New would store it
}

// values regenerates p's values as float32.
func (l *lazyInit) values(p *Param) []float32 {
	n := Elements(p.shape)
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
