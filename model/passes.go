package model

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/tritter-ai/conformance/internal/ops"
	"github.com/tritter-ai/conformance/kernels"
)

// A Pass is one forward pass of ForwardPasses: Forward(Batch, Options)
// under a GOMAXPROCS and a kernel path of its own.
type Pass struct {
	Batch   Batch
	Options ForwardOptions
	// Procs, when positive, is the GOMAXPROCS the pass runs under; else
	// the caller's.
	Procs int
	// Path, when set, is the kernel path of the pass's integer products;
	// else the active one.
	Path kernels.Path
}

// ForwardPasses runs several forward passes and returns their outputs in
// order. Each output is bit for bit the one Forward gives on the pass's
// batch and options under its GOMAXPROCS and kernel path; GOMAXPROCS and
// the active kernel path are the caller's again when it returns.
//
// On a streamed model the passes advance together, layer by layer: each
// layer is made (regenerated or read from the source, quantized and
// packed) once, every pass runs it in turn, and only then is the next
// layer made. The passes run one at a time, so each has the whole machine
// under its own GOMAXPROCS. Float64 passes and every pass of a resident
// model run one by one.
//
// layerDone, when set, is called after each layer has run in every pass
// that advances layer by layer, with the number of layers done so far.
//
// ForwardPasses must not run concurrently with calls that change the
// kernel path or GOMAXPROCS.
func (m *Model) ForwardPasses(passes []Pass, layerDone func(done, layers int)) ([]*Output, error) {
	for k, p := range passes {
		if err := m.checkBatch(p.Batch); err != nil {
			return nil, fmt.Errorf("pass %d: %w", k, err)
		}
		if err := checkCompute(p.Options.Compute); err != nil {
			return nil, fmt.Errorf("pass %d: %w", k, err)
		}
		if p.Path != "" && !slices.Contains(kernels.SupportedPaths(), p.Path) {
			return nil, fmt.Errorf("pass %d: kernel path %q: not supported here (supported: %v)", k, p.Path, kernels.SupportedPaths())
		}
	}
	env := callerEnv()
	defer env.restore()
	outs := make([]*Output, len(passes))
	var layered []int // passes that advance layer by layer
	for k, p := range passes {
		if m.stream != nil && p.Options.Compute != ComputeFloat64 {
			layered = append(layered, k)
			continue
		}
		env.apply(p)
		out, err := m.Forward(p.Batch, p.Options)
		env.restore()
		if err != nil {
			return nil, fmt.Errorf("pass %d: %w", k, err)
		}
		outs[k] = out
	}
	if len(layered) == 0 {
		return outs, nil
	}
	sub := make([]Pass, len(layered))
	for i, k := range layered {
		sub[i] = passes[k]
	}
	results, err := m.layerMajor(sub, env, layerDone)
	if err != nil {
		return nil, err
	}
	for i, k := range layered {
		outs[k] = results[i]
	}
	return outs, nil
}

// passEnv is the caller's GOMAXPROCS and kernel path, which a pass may
// replace while it runs.
type passEnv struct {
	procs int
	path  kernels.Path
}

func callerEnv() passEnv { return passEnv{runtime.GOMAXPROCS(0), kernels.ActivePath()} }

// apply gives the machine the pass's GOMAXPROCS and kernel path.
func (e passEnv) apply(p Pass) {
	procs, path := e.procs, e.path
	if p.Procs > 0 {
		procs = p.Procs
	}
	if p.Path != "" {
		path = p.Path
	}
	runtime.GOMAXPROCS(procs)
	if err := kernels.SetPath(path); err != nil {
		panic(err) // checked supported before
	}
}

func (e passEnv) restore() { e.apply(Pass{}) }

// passRun is one pass of layerMajor, run on its own goroutine by the
// network's ordinary forward code. When the network asks for layer i, the
// goroutine sends i on want and blocks until go-ahead delivers that
// layer's made parameters (or the error making it), so that exactly one
// pass computes at any time.
type passRun struct {
	pass    Pass
	net     *network[float32]
	want    chan int
	goAhead chan madeLayer
	done    chan struct{}
	result  *forwardResult[float32]
	err     error
	panic   any // a panic of the pass, raised again on the caller's goroutine
}

// madeLayer is one made layer's parameters by slot, or the error making it.
type madeLayer struct {
	params [slotsPerLayer]*Param
	err    error
}

// layerMajor runs float32 passes of a streamed model layer by layer.
func (m *Model) layerMajor(passes []Pass, env passEnv, layerDone func(done, layers int)) ([]*Output, error) {
	runs := make([]*passRun, len(passes))
	kernelLinears := false
	for k, p := range passes {
		net, err := m.network(p.Batch.B, p.Batch.T, p.Options.Compute, ops.Rounding{Seed: p.Options.Jitter})
		if err != nil {
			return nil, fmt.Errorf("pass %d: %w", k, err)
		}
		// The passes share one set of layer buffers, below: the set the
		// network borrowed goes back at once, unused.
		net.release()
		net.done = nil
		run := &passRun{pass: p, net: net, want: make(chan int), goAhead: make(chan madeLayer), done: make(chan struct{})}
		runs[k] = run
		compute := m.effectiveCompute(p.Options)
		kernelLinears = kernelLinears || compute == ComputeKernels
		table, scratch, r := &net.ops, &linearScratch{}, ops.Rounding{Seed: p.Options.Jitter}
		net.layer = func(i int) (*layerWeights[float32], error) {
			run.want <- i
			made := <-run.goAhead
			if made.err != nil {
				return nil, made.err
			}
			return layerWeightsOf(made.params, compute, table, r, scratch, nil)
		}
	}
	// next resumes a pass under its own GOMAXPROCS and kernel path and
	// returns the layer it asks for next, or -1 when it has finished.
	next := func(run *passRun, made *madeLayer) int {
		env.apply(run.pass)
		defer env.restore()
		if made == nil {
			go run.start()
		} else {
			run.goAhead <- *made
		}
		select {
		case i := <-run.want:
			return i
		case <-run.done:
			return -1
		}
	}
	waiting := make([]int, len(runs)) // the layer each pass asks for, or -1
	for k, run := range runs {
		waiting[k] = next(run, nil)
	}
	buf := m.stream.get()
	defer m.stream.put(buf)
	layers := int(m.cfg.NumHiddenLayers)
	for i := range layers {
		if !slices.Contains(waiting, i) {
			break // every pass has finished, with an error
		}
		made := m.makeLayer(buf, i, kernelLinears)
		for k, run := range runs {
			if waiting[k] == i {
				waiting[k] = next(run, &made)
			}
		}
		if layerDone != nil && made.err == nil {
			layerDone(i+1, layers)
		}
	}
	outs := make([]*Output, len(runs))
	for k, run := range runs {
		if run.panic != nil {
			panic(run.panic)
		}
		if run.err != nil {
			return nil, fmt.Errorf("pass %d: %w", k, run.err)
		}
		if waiting[k] != -1 || run.result == nil {
			return nil, fmt.Errorf("pass %d: stopped at layer %d", k, waiting[k])
		}
		outs[k] = outputOf(run.result, run.pass, int(m.cfg.HiddenSize), int(m.cfg.VocabSize))
	}
	return outs, nil
}

// start runs the pass's forward to the end, keeping its result, error or
// panic, and then closes done.
func (run *passRun) start() {
	defer close(run.done)
	defer func() { run.panic = recover() }()
	run.result, run.err = run.net.forward(run.pass.Batch.IDs, false)
}

// makeLayer makes layer i in buf, with its linears quantized and packed
// when a pass runs the integer kernels.
func (m *Model) makeLayer(buf *layerBuffers, i int, quantize bool) (made madeLayer) {
	// A source that breaks its contract panics (lazyInit.values); as an
	// error it reaches every waiting pass, which then ends, instead of
	// leaving their goroutines blocked behind a panic on this one.
	defer func() {
		if p := recover(); p != nil {
			made = madeLayer{err: fmt.Errorf("making layer %d: %v", i, p)}
		}
	}()
	ps, err := buf.load(m, i)
	if err != nil {
		return madeLayer{err: err}
	}
	if quantize {
		for _, p := range ps {
			if p.spec.Kind == KindLinear {
				if _, err := p.ternaryWith(buf.tern); err != nil {
					return madeLayer{err: err}
				}
			}
		}
	}
	return madeLayer{params: ps}
}

// effectiveCompute is the path Model.network runs opts on: the float path
// when the integer kernels would not round as the options ask.
func (m *Model) effectiveCompute(opts ForwardOptions) Compute {
	if m.variant.FloatPath || opts.Jitter != 0 {
		return ComputeFloat
	}
	return opts.Compute
}

// outputOf is Forward's output of a float32 forward result.
func outputOf(r *forwardResult[float32], p Pass, H, V int) *Output {
	b := p.Batch
	out := &Output{
		Logits:    toTensor(r.logits, b.B, b.T, V),
		FinalNorm: toTensor(r.finalNorm, b.B, b.T, H),
	}
	if p.Options.Trace {
		for _, h := range r.hidden {
			out.Hidden = append(out.Hidden, toTensor(h, b.B, b.T, H))
		}
	}
	return out
}
