package model

import (
	"fmt"

	"github.com/tritter-ai/conformance/internal/ops"
)

// This file wires the ops (internal/ops, through the network's ops.Table)
// into the decoder layer and the whole network, forward and backward,
// generic over the float type. The Model (forward.go, gradients.go) runs
// it in float32, or in float64 for ComputeFloat64; the tests also run it
// in float64 for finite differences.

// Tensor slots of one decoder layer, in inventory order.
const (
	slotInputNorm = iota
	slotQ
	slotK
	slotV
	slotAttnSubNorm
	slotO
	slotPostNorm
	slotGate
	slotUp
	slotFFNSubNorm
	slotDown
	slotsPerLayer
)

// dims are the sizes of one forward call.
type dims struct {
	B, T, H, I, V, nh, nkv, hd int
	eps, theta                 float64
}

func (d dims) N() int  { return d.B * d.T }
func (d dims) Q() int  { return d.nh * d.hd }  // q_proj width
func (d dims) KV() int { return d.nkv * d.hd } // k_proj/v_proj width
func (d dims) attn() ops.AttnShape {
	return ops.AttnShape{B: d.B, T: d.T, NH: d.nh, NKV: d.nkv, HD: d.hd}
}

func configDims(cfg Config, B, T int) dims {
	return dims{
		B: B, T: T,
		H: int(cfg.HiddenSize), I: int(cfg.IntermediateSize), V: int(cfg.VocabSize),
		nh: int(cfg.NumAttentionHeads), nkv: int(cfg.NumKeyValueHeads), hd: int(cfg.HeadDim()),
		eps: cfg.RMSNormEps, theta: cfg.RopeTheta,
	}
}

// layerWeights are one decoder layer's weights, indexed by slot: norm
// weights in norms, prepared BitLinears in linears.
type layerWeights[F ops.Float] struct {
	norms   [slotsPerLayer][]F
	linears [slotsPerLayer]ops.Linear[F]
}

// layerCache holds what the backward pass of one layer needs.
//
//	x [N,H] input            xn, rstd1: input_layernorm out [N,H], [N]
//	q [N,nh*hd], k, v [N,nkv*hd] (q, k after RoPE)   att [B,nh,T,T]
//	attn [N,nh*hd] attention out, attnNormed + rstdA after attn_sub_norm
//	h [N,H] after the attention residual   yn, rstd2: post_attention_layernorm
//	gate, up, glu [N,I]   gluNormed + rstdF after ffn_sub_norm
type layerCache[F ops.Float] struct {
	x, xn, rstd1, q, k, v, att, attn, attnNormed, rstdA []F
	h, yn, rstd2, gate, up, glu, gluNormed, rstdF       []F
}

// buffers lists the cache's own buffers (not the layer input x).
func (c *layerCache[F]) buffers() [][]F {
	return [][]F{c.xn, c.rstd1, c.q, c.k, c.v, c.att, c.attn, c.attnNormed, c.rstdA,
		c.h, c.yn, c.rstd2, c.gate, c.up, c.glu, c.gluNormed, c.rstdF}
}

// layerForward: out[N,H] = one decoder layer applied to x[N,H]:
//
//	h   = x + o_proj(attn_sub_norm(attention(rope(q_proj(xn)), rope(k_proj(xn)), v_proj(xn))))
//	out = h + down_proj(ffn_sub_norm(relu(gate_proj(yn))² · up_proj(yn)))
//
// with xn = input_layernorm(x) and yn = post_attention_layernorm(h). It
// returns the activations the backward pass needs, in buffers from pool.
// obs sees each trace point as soon as it is computed (observer.go).
func (net *network[F]) layerForward(out, x []F, w *layerWeights[F], rt ops.RopeTable[F], pool *bufferPool[F], obs layerObserver[F]) *layerCache[F] {
	d, op := net.d, &net.ops
	N, H, I, Q, KV := d.N(), d.H, d.I, d.Q(), d.KV()
	g := pool.get
	c := &layerCache[F]{
		x: x, xn: g(N * H), rstd1: g(N),
		q: g(N * Q), k: g(N * KV), v: g(N * KV),
		att: g(d.B * d.nh * d.T * d.T), attn: g(N * Q), attnNormed: g(N * Q), rstdA: g(N),
		h: g(N * H), yn: g(N * H), rstd2: g(N),
		gate: g(N * I), up: g(N * I), glu: g(N * I), gluNormed: g(N * I), rstdF: g(N),
	}
	branch := g(N * H)
	defer pool.put(branch)
	// attention block
	op.InputNorm.Forward(c.xn, c.rstd1, x, w.norms[slotInputNorm], N, H, d.eps)
	obs.forward("attn_norm", c.xn)
	forwardShared([]ops.Linear[F]{w.linears[slotQ], w.linears[slotK], w.linears[slotV]}, [][]F{c.q, c.k, c.v}, c.xn, N)
	obs.forward("q", c.q)
	obs.forward("k", c.k)
	obs.forward("v", c.v)
	op.Rope.Forward(c.q, rt, d.B, d.T, d.nh)
	op.Rope.Forward(c.k, rt, d.B, d.T, d.nkv)
	op.Attention.Forward(c.attn, c.att, c.q, c.k, c.v, d.attn())
	obs.forward("attn", c.attn)
	op.AttnSubNorm.Forward(c.attnNormed, c.rstdA, c.attn, w.norms[slotAttnSubNorm], N, Q, d.eps)
	obs.forward("attn_sub_norm", c.attnNormed)
	w.linears[slotO].Forward(branch, c.attnNormed, N)
	obs.forward("o", branch)
	op.AttnResidual.Forward(c.h, x, branch)
	obs.forward("h", c.h)
	// MLP block
	op.PostNorm.Forward(c.yn, c.rstd2, c.h, w.norms[slotPostNorm], N, H, d.eps)
	obs.forward("ffn_norm", c.yn)
	forwardShared([]ops.Linear[F]{w.linears[slotGate], w.linears[slotUp]}, [][]F{c.gate, c.up}, c.yn, N)
	obs.forward("gate", c.gate)
	obs.forward("up", c.up)
	op.GLU.Forward(c.glu, c.gate, c.up)
	obs.forward("act", c.glu)
	op.FFNSubNorm.Forward(c.gluNormed, c.rstdF, c.glu, w.norms[slotFFNSubNorm], N, I, d.eps)
	obs.forward("ffn_sub_norm", c.gluNormed)
	w.linears[slotDown].Forward(branch, c.gluNormed, N)
	obs.forward("down", branch)
	op.MLPResidual.Forward(out, c.h, branch)
	return c
}

// layerBackward is layerForward's backward pass: gradX[N,H] (overwritten)
// from gradOut[N,H]. grads[slot] receive the weight gradients: linear slots
// are overwritten, norm slots must be zeroed by the caller (they accumulate).
// obs sees the gradient of each trace point once it is complete.
func (net *network[F]) layerBackward(gradX, gradOut []F, w *layerWeights[F], c *layerCache[F], grads *[slotsPerLayer][]F, rt ops.RopeTable[F], pool *bufferPool[F], obs layerObserver[F]) {
	d, op := net.d, &net.ops
	N, H, I, Q, KV := d.N(), d.H, d.I, d.Q(), d.KV()
	var temps [][]F
	temp := func(n int) []F {
		b := pool.get(n)
		temps = append(temps, b)
		return b
	}
	defer func() { pool.put(temps...) }()
	// MLP block: out = h + down(...)
	gradH := temp(N * H)
	op.MLPResidual.Backward(gradH, gradOut)
	gradGluNormed := temp(N * I)
	w.linears[slotDown].Backward(gradGluNormed, grads[slotDown], c.gluNormed, gradOut, N)
	obs.backward("ffn_sub_norm", gradGluNormed)
	gradGlu := temp(N * I)
	op.FFNSubNorm.Backward(gradGlu, grads[slotFFNSubNorm], gradGluNormed, c.glu, w.norms[slotFFNSubNorm], c.rstdF, N, I)
	obs.backward("act", gradGlu)
	gradGate, gradUp := temp(N*I), temp(N*I)
	op.GLU.Backward(gradGate, gradUp, gradGlu, c.gate, c.up)
	obs.backward("gate", gradGate)
	obs.backward("up", gradUp)
	gradYn := temp(N * H)
	w.linears[slotGate].Backward(gradYn, grads[slotGate], c.yn, gradGate, N)
	w.linears[slotUp].Backward(gradYn, grads[slotUp], c.yn, gradUp, N)
	obs.backward("ffn_norm", gradYn)
	op.PostNorm.Backward(gradH, grads[slotPostNorm], gradYn, c.h, w.norms[slotPostNorm], c.rstd2, N, H)
	obs.backward("h", gradH)
	// attention block: h = x + o(...)
	op.AttnResidual.Backward(gradX, gradH)
	gradAttnNormed := temp(N * Q)
	w.linears[slotO].Backward(gradAttnNormed, grads[slotO], c.attnNormed, gradH, N)
	obs.backward("attn_sub_norm", gradAttnNormed)
	gradAttn := temp(N * Q)
	op.AttnSubNorm.Backward(gradAttn, grads[slotAttnSubNorm], gradAttnNormed, c.attn, w.norms[slotAttnSubNorm], c.rstdA, N, Q)
	obs.backward("attn", gradAttn)
	gradQ, gradK, gradV := temp(N*Q), temp(N*KV), temp(N*KV)
	op.Attention.Backward(gradQ, gradK, gradV, gradAttn, c.att, c.q, c.k, c.v, d.attn())
	op.Rope.Backward(gradQ, rt, d.B, d.T, d.nh)
	op.Rope.Backward(gradK, rt, d.B, d.T, d.nkv)
	obs.backward("q", gradQ)
	obs.backward("k", gradK)
	obs.backward("v", gradV)
	gradXn := temp(N * H)
	w.linears[slotQ].Backward(gradXn, grads[slotQ], c.xn, gradQ, N)
	w.linears[slotK].Backward(gradXn, grads[slotK], c.xn, gradK, N)
	w.linears[slotV].Backward(gradXn, grads[slotV], c.xn, gradV, N)
	obs.backward("attn_norm", gradXn)
	op.InputNorm.Backward(gradX, grads[slotInputNorm], gradXn, c.x, w.norms[slotInputNorm], c.rstd1, N, H)
}

// zeroed allocates n zeros for use as an accumulation target. The explicit
// clear makes the first touch of fresh pages a write: a read first would map
// the shared zero page and the write after it would take a copy-on-write
// fault with a TLB shootdown, which dominated the system time of the
// full-scale backward pass.
func zeroed[F ops.Float](n int) []F {
	s := make([]F, n)
	clear(s)
	return s
}

// bufferPool recycles activation-sized buffers within one network call,
// which uses it from one goroutine. Without it every layer would take fresh
// memory and the Go heap would grow to twice its live size before a
// collection; first touches of fresh pages cost ~10 µs each on the
// project's VM, which made up a third of the full-scale backward time.
type bufferPool[F ops.Float] struct{ free [][]F }

// get returns n zeros, reusing the smallest free buffer that fits.
func (p *bufferPool[F]) get(n int) []F {
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best < 0 {
		return zeroed[F](n)
	}
	b := p.free[best][:n]
	p.free = append(p.free[:best], p.free[best+1:]...)
	clear(b)
	return b
}

// put hands buffers back; the caller must not use them afterwards.
func (p *bufferPool[F]) put(bufs ...[]F) { p.free = append(p.free, bufs...) }

// network is the whole model for one float type.
type network[F ops.Float] struct {
	d         dims
	ops       ops.Table[F]
	embed     ops.Matrix[F]
	head      ops.Matrix[F] // the embedding when tied
	tied      bool
	finalNorm []F
	// layer returns layer i's prepared weights.
	layer  func(i int) (*layerWeights[F], error)
	layers int
	names  func(i, slot int) string
	// observer, when set, sees (and may overwrite) every op's output
	// (observer.go).
	observer observer[F]
	// checkpoint keeps only each layer's input in the forward pass of
	// gradients; the backward pass recomputes the layer's forward from it
	// (activation checkpointing). The recomputation gives the same bits,
	// so the gradients are those of the kept activations. An observer may
	// rewrite activations as they are computed, so with one all are kept.
	checkpoint bool
	// done, when set, gives back what the network borrowed (stream.go).
	done func()
}

// release gives back what the network borrowed; it must not run after.
func (net *network[F]) release() {
	if net.done != nil {
		net.done()
	}
}

// recomputes reports whether the backward pass recomputes each layer's
// forward instead of keeping its activations.
func (net *network[F]) recomputes() bool { return net.checkpoint && net.observer == nil }

// observe hands the value of a traced tensor to the observer, if any.
func (net *network[F]) observe(name string, v []F) {
	if net.observer != nil {
		net.observer.observe(name, v)
	}
}

// forwardResult holds the outputs and, for backward, the saved activations.
type forwardResult[F ops.Float] struct {
	logits    []F   // [N,V]
	hidden    [][]F // L+1 residual streams [N,H]
	finalNorm []F   // [N,H]
	rstdFinal []F
	caches    []*layerCache[F]
	rt        ops.RopeTable[F]
	pool      *bufferPool[F] // recycles the activations of finished layers
}

func (net *network[F]) forward(ids []int32, keep bool) (*forwardResult[F], error) {
	d, op := net.d, &net.ops
	N, H := d.N(), d.H
	r := &forwardResult[F]{rt: ops.NewRopeTable[F](d.T, d.hd, d.theta), pool: &bufferPool[F]{}}
	x := make([]F, N*H)
	op.Embedding.Forward(x, net.embed, ids, H)
	net.observe("hidden.0", x)
	r.hidden = append(r.hidden, x)
	for i := 0; i < net.layers; i++ {
		w, err := net.layer(i)
		if err != nil {
			return nil, err
		}
		out := make([]F, N*H)
		c := net.layerForward(out, x, w, r.rt, r.pool, layerObserver[F]{net.observer, i})
		net.observe(fmt.Sprintf("hidden.%d", i+1), out)
		switch {
		case keep && !net.recomputes():
			r.caches = append(r.caches, c)
		case keep:
			r.pool.put(c.buffers()...)
			r.caches = append(r.caches, nil) // recomputed by gradients
		default:
			r.pool.put(c.buffers()...)
		}
		r.hidden = append(r.hidden, out)
		x = out
	}
	r.finalNorm, r.rstdFinal = make([]F, N*H), make([]F, N)
	op.FinalNorm.Forward(r.finalNorm, r.rstdFinal, x, net.finalNorm, N, H, d.eps)
	net.observe("final_norm", r.finalNorm)
	r.logits = make([]F, N*d.V)
	op.Head.Forward(r.logits, r.finalNorm, net.head, N, d.V, H)
	net.observe("logits", r.logits)
	return r, nil
}

// gradients runs forward and backward and hands each parameter's gradient
// to visit exactly once (the slice may be reused after visit returns).
func (net *network[F]) gradients(ids []int32, visit func(name string, grad []F)) (float64, error) {
	d, op := net.d, &net.ops
	N, H, V := d.N(), d.H, d.V
	r, err := net.forward(ids, true)
	if err != nil {
		return 0, err
	}
	gradLogits := make([]F, N*V)
	loss := op.CrossEntropy(gradLogits, r.logits, ids, d.B, d.T, V)
	net.observe("grad.logits", gradLogits)

	// The head's backward overwrites gradHead; for a tied model the lookup
	// path then adds into the same buffer.
	gradHead := make([]F, V*H)
	gradFinal := zeroed[F](N * H)
	op.Head.Backward(gradFinal, gradHead, gradLogits, r.finalNorm, net.head, N, V, H)
	net.observe("grad.final_norm", gradFinal)
	if !net.tied {
		visit("lm_head.weight", gradHead)
	}
	gradX := make([]F, N*H)
	gradNorm := zeroed[F](H)
	op.FinalNorm.Backward(gradX, gradNorm, gradFinal, r.hidden[net.layers], net.finalNorm, r.rstdFinal, N, H)
	net.observe(fmt.Sprintf("grad.hidden.%d", net.layers), gradX)
	visit("model.norm.weight", gradNorm)

	var grads [slotsPerLayer][]F
	gradIn := make([]F, N*H)
	for i := net.layers - 1; i >= 0; i-- {
		w, err := net.layer(i)
		if err != nil {
			return 0, err
		}
		for slot := range grads {
			n := len(w.norms[slot])
			if l := w.linears[slot]; l != nil {
				out, in := l.Dims()
				n = out * in
			}
			if len(grads[slot]) != n {
				grads[slot] = make([]F, n)
			}
			if w.linears[slot] == nil {
				clear(grads[slot]) // norm gradients accumulate; linear ones are overwritten
			}
		}
		c := r.caches[i]
		if c == nil {
			// Activation checkpointing: the layer's forward again, from
			// its saved input; its output (hidden i+1) is not needed.
			out := r.pool.get(N * H)
			c = net.layerForward(out, r.hidden[i], w, r.rt, r.pool, layerObserver[F]{})
			r.pool.put(out)
		}
		net.layerBackward(gradIn, gradX, w, c, &grads, r.rt, r.pool, layerObserver[F]{net.observer, i})
		net.observe(fmt.Sprintf("grad.hidden.%d", i), gradIn)
		r.pool.put(c.buffers()...)
		r.caches[i] = nil
		for slot := range grads {
			visit(net.names(i, slot), grads[slot])
		}
		gradX, gradIn = gradIn, gradX
	}
	gradEmbed := gradHead // tied: the lm_head path's gradient, to which the lookup path adds
	if !net.tied {
		// lm_head's gradient was visited: its memory holds the embedding's.
		clear(gradEmbed)
	}
	op.Embedding.Backward(gradEmbed, gradX, ids, H)
	visit("model.embed_tokens.weight", gradEmbed)
	return loss, nil
}

// layerName is the HF name of a layer tensor.
func layerName(i, slot int) string {
	suffix := [slotsPerLayer]string{
		"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
		"self_attn.v_proj.weight", "self_attn.attn_sub_norm.weight", "self_attn.o_proj.weight",
		"post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
		"mlp.ffn_sub_norm.weight", "mlp.down_proj.weight",
	}[slot]
	return fmt.Sprintf("model.layers.%d.%s", i, suffix)
}
