package model

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/tritter-ai/conformance/internal/ops"
	"github.com/tritter-ai/conformance/kernels"
)

// Storage is how latent parameters are held in memory.
type Storage int

const (
	// StorageAuto is float32 below AutoBF16Threshold parameters and bfloat16
	// at or above it.
	StorageAuto Storage = iota
	StorageF32
	// StorageBF16 halves the memory. The official checkpoints are bf16, so
	// nothing is lost for them; random or float32 weights are rounded to
	// nearest even.
	StorageBF16
)

// AutoBF16Threshold is the parameter count from which StorageAuto picks bf16.
const AutoBF16Threshold = 100_000_000

func (s Storage) String() string {
	switch s {
	case StorageAuto:
		return "auto"
	case StorageF32:
		return "f32"
	case StorageBF16:
		return "bf16"
	}
	return fmt.Sprintf("Storage(%d)", int(s))
}

func (s Storage) resolve(cfg Config) (Storage, error) {
	switch s {
	case StorageAuto:
		if cfg.ParamCount() >= AutoBF16Threshold {
			return StorageBF16, nil
		}
		return StorageF32, nil
	case StorageF32, StorageBF16:
		return s, nil
	}
	return 0, fmt.Errorf("storage: expected StorageAuto, StorageF32 or StorageBF16, got %v", s)
}

// Options configure New.
type Options struct {
	// Seed selects the random initialisation; the same seed gives the same
	// weights for any GOMAXPROCS.
	Seed uint64
	// Storage of the latent parameters; StorageAuto by default.
	Storage Storage
	// Zero skips the random initialisation and leaves every parameter
	// (norms included) zero, for callers that overwrite them all, such as
	// checkpoint loaders. Untouched bf16 storage costs no physical memory
	// until written, so linears later made offline never take any.
	Zero bool
	// Streamed stores no decoder layer: each layer's weights are
	// regenerated from their init streams (the values New would store)
	// whenever the layer runs, into buffers reused from layer to layer, and
	// the gradient pass recomputes each layer's forward from its saved
	// input (stream.go). Only the embedding, the final norm and the lm_head
	// stay resident. Results are bit-identical to the resident model's.
	Streamed bool
	// Source, with Streamed, supplies the decoder-layer tensors each time
	// their layer runs instead of the random initialisation (stream.go),
	// for example a checkpoint's mapped files. The embedding, final norm
	// and lm_head are then left zero for the caller to Set.
	Source TensorSource
}

// Model is a BitNet b1.58 causal language model. Forward, Gradients and the
// other read-only methods may run from several goroutines at once; Set and
// SetTernary must not run concurrently with them.
type Model struct {
	cfg    Config
	params []*Param
	byName map[string]*Param
	// variant replaces reference ops (UseVariant); the zero value is the
	// reference model.
	variant ops.Variant
	// stream materialises the layers of a streamed model (Options.Streamed).
	stream *layerStream
}

// Param is one parameter tensor, stored as float32 or bfloat16, or (after
// SetTernary) only as packed ternary weights with their scale.
type Param struct {
	spec  TensorSpec
	shape []int
	f32   []float32
	bf16  []uint16
	// mapping owns bf16's memory when it lives outside the Go heap.
	mapping *mapping
	// lazy, for a layer tensor of a streamed model, says how to regenerate
	// the values it does not store.
	lazy *lazyInit

	mu   sync.Mutex
	tern *ternaryWeight // KindLinear: quantized cache, or the only copy when offline
}

// Name is the HF tensor name.
func (p *Param) Name() string { return p.spec.Name }

// Spec is the inventory entry of the parameter.
func (p *Param) Spec() TensorSpec { return p.spec }

// Shape is the tensor shape.
func (p *Param) Shape() []int { return append([]int(nil), p.shape...) }

// Float32 returns the values. For float32 storage this is the stored slice
// itself: treat it as read-only and change values with Set. For bf16 it is
// a fresh copy. For an offline linear it is the dequantized ternary weight.
func (p *Param) Float32() []float32 {
	switch {
	case p.f32 != nil:
		return p.f32
	case p.bf16 != nil:
		out := make([]float32, len(p.bf16))
		bf16ToF32(out, p.bf16)
		runtime.KeepAlive(p) // p owns the mapping behind p.bf16
		return out
	case p.lazy != nil:
		return p.lazy.values(p)
	}
	p.mu.Lock()
	tw := p.tern
	p.mu.Unlock()
	return tw.dequantized()
}

// Set replaces the values (rounded to bf16 under bf16 storage) and drops any
// quantized cache. A parameter made offline by SetTernary gets its latent
// storage back as float32.
func (p *Param) Set(data []float32) error {
	n := Elements(p.shape)
	if len(data) != n {
		return fmt.Errorf("%s: expected %d values for shape %s, got %d", p.spec.Name, n, ShapeString(p.shape), len(data))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.bf16 != nil:
		f32ToBF16(p.bf16, data)
	case p.f32 != nil:
		copy(p.f32, data)
	default:
		p.f32 = append([]float32(nil), data...)
	}
	p.tern, p.lazy = nil, nil
	runtime.KeepAlive(p)
	return nil
}

// rowsInto copies rows [lo, hi) of the parameter, viewed as [shape[0], rest],
// into dst as float32.
func (p *Param) rowsInto(dst []float32, lo, hi int) {
	cols := Elements(p.shape[1:])
	switch {
	case p.f32 != nil:
		copy(dst, p.f32[lo*cols:hi*cols])
	case p.bf16 != nil:
		bf16ToF32(dst[:(hi-lo)*cols], p.bf16[lo*cols:hi*cols])
	default:
		copy(dst, p.Float32()[lo*cols:hi*cols])
	}
	runtime.KeepAlive(p)
}

// dense returns the float32 storage, or nil when the parameter is not
// stored as float32.
func (p *Param) dense() []float32 { return p.f32 }

func (p *Param) offline() bool { return p.f32 == nil && p.bf16 == nil && p.lazy == nil }

// Offline returns the ternary codes and weight_scale of a linear made
// offline by SetOffline, exactly as they were set, with their convention;
// ok is false for a parameter that holds latent values. A streamed layer
// tensor answers for its source.
func (p *Param) Offline() (w *kernels.Ternary, weightScale float32, conv ScaleConvention, ok bool) {
	if l := p.lazy; l != nil && l.source != nil && p.spec.Kind == KindLinear {
		w, weightScale, conv, ok, err := l.source.Offline(p.spec.Name)
		if err != nil {
			panic(fmt.Sprintf("model: streamed tensor %s: %v", p.spec.Name, err))
		}
		return w, weightScale, conv, ok
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.offline() || p.tern == nil {
		return nil, 0, 0, false
	}
	conv = ScaleDivides
	if p.tern.multiplies {
		conv = ScaleMultiplies
	}
	return p.tern.t, p.tern.scale, conv, true
}

// ternary returns the quantized form of a linear weight, building and
// caching it on first use.
func (p *Param) ternary() (*ternaryWeight, error) { return p.ternaryWith(nil) }

// ternaryWith is ternary with scratch space for an f32 weight's ternary
// values (bf16 weights are packed without it).
func (p *Param) ternaryWith(tern []int8) (*ternaryWeight, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tern != nil {
		return p.tern, nil
	}
	var tw *ternaryWeight
	var err error
	if p.bf16 != nil {
		tw, err = quantizeBF16(p.bf16, p.shape[0], p.shape[1])
	} else {
		tw, err = quantizeWeight(p.f32, p.shape[0], p.shape[1], tern)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", p.spec.Name, err)
	}
	p.tern = tw
	runtime.KeepAlive(p)
	return tw, nil
}

func (p *Param) elements() int64 {
	if p.offline() {
		return int64(p.tern.t.Rows) * int64(p.tern.t.Cols)
	}
	return int64(Elements(p.shape))
}

func (p *Param) bytes() int64 {
	n := int64(4*len(p.f32) + 2*len(p.bf16))
	p.mu.Lock()
	if p.tern != nil {
		n += p.tern.bytes()
	}
	p.mu.Unlock()
	return n
}

// newModel allocates zeroed parameters for cfg; with streamed, decoder
// layer tensors get no storage.
func newModel(cfg Config, storage Storage, streamed bool) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if int64(int(cfg.ParamCount())) != cfg.ParamCount() {
		return nil, fmt.Errorf("config: %d parameters do not fit this platform's int", cfg.ParamCount())
	}
	st, err := storage.resolve(cfg)
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, byName: make(map[string]*Param)}
	for _, spec := range cfg.Inventory() {
		shape := make([]int, len(spec.Shape))
		for i, d := range spec.Shape {
			shape[i] = int(d)
		}
		p := &Param{spec: spec, shape: shape}
		switch {
		case streamed && spec.Layer >= 0:
			p.lazy = &lazyInit{storage: st, stream: len(m.params)}
		case st == StorageBF16:
			if p.bf16, err = allocBF16(p, Elements(shape)); err != nil {
				return nil, fmt.Errorf("%s: %v", spec.Name, err)
			}
		default:
			p.f32 = make([]float32, Elements(shape))
		}
		m.params = append(m.params, p)
		m.byName[spec.Name] = p
	}
	return m, nil
}

// New builds a model with deterministic random weights: linear and embedding
// weights ~ N(0, cfg.InitStd()), norm weights 1 (unless opts.Zero).
func New(cfg Config, opts Options) (*Model, error) {
	if opts.Streamed && opts.Zero {
		return nil, fmt.Errorf("options: Streamed regenerates the random initialisation, which Zero skips; expected at most one of them")
	}
	if opts.Source != nil && !opts.Streamed {
		return nil, fmt.Errorf("options: Source supplies the layers of a streamed model; expected Streamed with it")
	}
	m, err := newModel(cfg, opts.Storage, opts.Streamed)
	if err != nil {
		return nil, err
	}
	if opts.Zero {
		return m, nil
	}
	if opts.Source != nil {
		for _, p := range m.params {
			if p.lazy != nil {
				p.lazy.source = opts.Source
			}
		}
		m.stream = &layerStream{m: m}
		return m, nil
	}
	var stored []*Param
	var streams []int
	for i, p := range m.params {
		if p.lazy != nil {
			p.lazy.seed, p.lazy.std = opts.Seed, cfg.InitStd()
			continue
		}
		stored = append(stored, p)
		streams = append(streams, i)
	}
	initTensors(stored, streams, opts.Seed, cfg.InitStd())
	if opts.Streamed {
		m.stream = &layerStream{m: m}
	}
	return m, nil
}

// FromTensors builds a model from float32 latent weights under their HF
// names. Every inventory tensor must be present with its exact shape, and no
// other tensor may be. Storage is StorageAuto.
func FromTensors(cfg Config, params map[string]*Tensor) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var missing []string
	for _, spec := range cfg.Inventory() {
		if _, ok := params[spec.Name]; !ok {
			missing = append(missing, spec.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing tensors: %v", missing)
	}
	m, err := newModel(cfg, StorageAuto, false)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names) // the first error is the same on every run
	for _, name := range names {
		t := params[name]
		p, ok := m.byName[name]
		if !ok {
			return nil, fmt.Errorf("%s: unexpected tensor (not in the inventory of this config)", name)
		}
		if t == nil || !slices.Equal(t.Shape, p.shape) {
			got := "nil"
			if t != nil {
				got = ShapeString(t.Shape)
			}
			return nil, fmt.Errorf("%s: expected shape %s, got %s", name, ShapeString(p.shape), got)
		}
		if err := p.Set(t.Data); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SetTernary makes a linear offline in the autobitlinear convention:
// y = linear(act_quant(x), W)·weightScale with W ternary. The latent weight
// is dropped.
func (m *Model) SetTernary(name string, w *kernels.Ternary, weightScale float32) error {
	return m.SetOffline(name, w, weightScale, ScaleMultiplies)
}

// SetOffline makes a linear offline: ternary codes w and the weight_scale
// of an offline checkpoint, which multiplies (autobitlinear) or divides
// (bitlinear) as conv says. The latent weight is dropped.
func (m *Model) SetOffline(name string, w *kernels.Ternary, weightScale float32, conv ScaleConvention) error {
	p, ok := m.byName[name]
	if !ok {
		return fmt.Errorf("%s: no such parameter", name)
	}
	if p.spec.Kind != KindLinear {
		return fmt.Errorf("%s: expected a linear weight, got a %v tensor", name, p.spec.Kind)
	}
	tw, err := offlineWeight(p, w, weightScale, conv)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.f32, p.bf16, p.lazy = nil, nil, nil
	releaseStorage(p)
	p.tern = tw
	return nil
}

// offlineWeight checks an offline linear's codes and weight_scale against
// p and returns them as p's ternary weight.
func offlineWeight(p *Param, w *kernels.Ternary, weightScale float32, conv ScaleConvention) (*ternaryWeight, error) {
	name := p.spec.Name
	if w == nil || w.Rows != p.shape[0] || w.Cols != p.shape[1] {
		got := "nil"
		if w != nil {
			got = ShapeString([]int{w.Rows, w.Cols})
		}
		return nil, fmt.Errorf("%s: expected ternary shape %s, got %s", name, ShapeString(p.shape), got)
	}
	if !(weightScale > 0) || math.IsInf(float64(weightScale), 0) {
		return nil, fmt.Errorf("%s: weight_scale: expected a finite positive number, got %v", name, weightScale)
	}
	if conv != ScaleMultiplies && conv != ScaleDivides {
		return nil, fmt.Errorf("%s: unknown scale convention %v", name, conv)
	}
	return &ternaryWeight{t: w, scale: weightScale, multiplies: conv == ScaleMultiplies}, nil
}

// Config returns the model's config.
func (m *Model) Config() Config { return m.cfg }

// UseVariant makes m run the ops of v in place of the reference ones, for
// the conformance harness's self-test, which injects deliberate bugs
// (internal/mutants) to prove that each is caught at its op. ops.Variant
// is internal to this module, so code outside it cannot build one; the
// zero Variant is the reference model. UseVariant must not run
// concurrently with the model's other methods.
func (m *Model) UseVariant(v ops.Variant) { m.variant = v }

// Params lists the parameters in inventory order.
func (m *Model) Params() []*Param { return append([]*Param(nil), m.params...) }

// Param looks a parameter up by HF name.
func (m *Model) Param(name string) (*Param, bool) {
	p, ok := m.byName[name]
	return p, ok
}

// ParamCount counts the elements actually stored.
func (m *Model) ParamCount() int64 {
	var n int64
	for _, p := range m.params {
		n += p.elements()
	}
	return n
}

// MemoryBytes is the memory held by parameters and quantized caches.
func (m *Model) MemoryBytes() int64 {
	var n int64
	for _, p := range m.params {
		n += p.bytes()
	}
	return n
}

// prepareTernary quantizes and packs every linear weight that has no cache
// yet, one matrix per worker.
func (m *Model) prepareTernary() error {
	var todo []*Param
	for _, p := range m.params {
		if p.spec.Kind == KindLinear && p.lazy == nil {
			todo = append(todo, p)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tern []int8
			for i := range next {
				_, errs[i] = todo[i].ternaryWith(tern)
				if n := len(todo[i].f32); n > cap(tern) { // bf16 packs without scratch
					tern = make([]int8, n)
				}
			}
		}()
	}
	for i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ----------------------------------------------------------------------------
// bfloat16

// f32ToBF16 rounds to nearest even; NaN stays NaN.
func f32ToBF16(dst []uint16, src []float32) {
	ops.ParallelFor(len(src), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = bf16Round(src[i])
		}
	})
}

// bf16Round rounds a float32 to the nearest bfloat16, ties to even.
func bf16Round(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // keep NaN a NaN
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

func bf16ToF32(dst []float32, src []uint16) {
	ops.ParallelFor(len(src), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = math.Float32frombits(uint32(src[i]) << 16)
		}
	})
}
