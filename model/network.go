package model

import "fmt"

// This file wires the ops of ops.go into the decoder layer and the whole
// network, forward and backward, generic over the float type. The Model
// (model.go, forward.go) runs it in float32; the tests also run it in
// float64 for finite differences.

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
func (d dims) attn() attnShape {
	return attnShape{B: d.B, T: d.T, nh: d.nh, nkv: d.nkv, hd: d.hd}
}

func configDims(cfg Config, B, T int) dims {
	return dims{
		B: B, T: T,
		H: int(cfg.HiddenSize), I: int(cfg.IntermediateSize), V: int(cfg.VocabSize),
		nh: int(cfg.NumAttentionHeads), nkv: int(cfg.NumKeyValueHeads), hd: int(cfg.HeadDim()),
		eps: cfg.RMSNormEps, theta: cfg.RopeTheta,
	}
}

// matrix is a read-only [rows, cols] weight whose storage may differ from F.
type matrix[F float] interface {
	// rowsInto copies rows [lo, hi) into dst.
	rowsInto(dst []F, lo, hi int)
	// dense returns the whole matrix as F without copying, or nil.
	dense() []F
}

// denseMatrix is a matrix stored as F.
type denseMatrix[F float] struct {
	data []F
	cols int
}

func (m denseMatrix[F]) rowsInto(dst []F, lo, hi int) { copy(dst, m.data[lo*m.cols:hi*m.cols]) }
func (m denseMatrix[F]) dense() []F                   { return m.data }

// layerWeights are one decoder layer's weights, indexed by slot: norm
// weights in norms, prepared BitLinears in linears.
type layerWeights[F float] struct {
	norms   [slotsPerLayer][]F
	linears [slotsPerLayer]linearOp[F]
}

// layerCache holds what the backward pass of one layer needs.
//
//	x [N,H] input            xn, rstd1: input_layernorm out [N,H], [N]
//	q [N,nh*hd], k, v [N,nkv*hd] (q, k after RoPE)   att [B,nh,T,T]
//	attn [N,nh*hd] attention out, attnNormed + rstdA after attn_sub_norm
//	h [N,H] after the attention residual   yn, rstd2: post_attention_layernorm
//	gate, up, glu [N,I]   gluNormed + rstdF after ffn_sub_norm
type layerCache[F float] struct {
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
//
// tap sees each trace point as soon as it is computed (teacher.go).
func layerForward[F float](out, x []F, w *layerWeights[F], d dims, rt ropeTable[F], q *quirks, pool *bufferPool[F], tap layerTap[F]) *layerCache[F] {
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
	rmsNormForward(c.xn, c.rstd1, x, w.norms[slotInputNorm], N, H, d.eps, q)
	tap.forward("attn_norm", c.xn)
	forwardShared([]linearOp[F]{w.linears[slotQ], w.linears[slotK], w.linears[slotV]}, [][]F{c.q, c.k, c.v}, c.xn, N)
	tap.forward("q", c.q)
	tap.forward("k", c.k)
	tap.forward("v", c.v)
	ropeForward(c.q, rt, d.B, d.T, d.nh, q)
	ropeForward(c.k, rt, d.B, d.T, d.nkv, q)
	attentionForward(c.attn, c.att, c.q, c.k, c.v, d.attn(), q)
	tap.forward("attn", c.attn)
	if q.noAttnSubNorm {
		copy(c.attnNormed, c.attn)
	} else {
		rmsNormForward(c.attnNormed, c.rstdA, c.attn, w.norms[slotAttnSubNorm], N, Q, d.eps, q)
	}
	tap.forward("attn_sub_norm", c.attnNormed)
	w.linears[slotO].forward(branch, c.attnNormed, N)
	tap.forward("o", branch)
	residualForward(c.h, x, branch, q.noAttnResidual)
	tap.forward("h", c.h)
	// MLP block
	rmsNormForward(c.yn, c.rstd2, c.h, w.norms[slotPostNorm], N, H, d.eps, q)
	tap.forward("ffn_norm", c.yn)
	forwardShared([]linearOp[F]{w.linears[slotGate], w.linears[slotUp]}, [][]F{c.gate, c.up}, c.yn, N)
	tap.forward("gate", c.gate)
	tap.forward("up", c.up)
	gluForward(c.glu, c.gate, c.up, q)
	tap.forward("act", c.glu)
	if q.noFFNSubNorm {
		copy(c.gluNormed, c.glu)
	} else {
		rmsNormForward(c.gluNormed, c.rstdF, c.glu, w.norms[slotFFNSubNorm], N, I, d.eps, q)
	}
	tap.forward("ffn_sub_norm", c.gluNormed)
	w.linears[slotDown].forward(branch, c.gluNormed, N)
	tap.forward("down", branch)
	if q.mlpResidualFromInput {
		residualForward(out, x, branch, false)
	} else {
		residualForward(out, c.h, branch, false)
	}
	return c
}

// layerBackward is layerForward's backward pass: gradX[N,H] (overwritten)
// from gradOut[N,H]. grads[slot] receive the weight gradients: linear slots
// are overwritten, norm slots must be zeroed by the caller (they accumulate).
// tap sees the gradient of each trace point once it is complete.
func layerBackward[F float](gradX, gradOut []F, w *layerWeights[F], c *layerCache[F], grads *[slotsPerLayer][]F, d dims, rt ropeTable[F], q *quirks, pool *bufferPool[F], tap layerTap[F]) {
	N, H, I, Q, KV := d.N(), d.H, d.I, d.Q(), d.KV()
	var temps [][]F
	temp := func(n int) []F {
		b := pool.get(n)
		temps = append(temps, b)
		return b
	}
	defer func() { pool.put(temps...) }()
	// MLP block: out = h + down(...), so gradH starts as gradOut.
	gradH := temp(N * H)
	copy(gradH, gradOut)
	gradGluNormed := temp(N * I)
	w.linears[slotDown].backward(gradGluNormed, grads[slotDown], c.gluNormed, gradOut, N)
	tap.backward("ffn_sub_norm", gradGluNormed)
	gradGlu := gradGluNormed
	if !q.noFFNSubNorm {
		gradGlu = temp(N * I)
		rmsNormBackward(gradGlu, grads[slotFFNSubNorm], gradGluNormed, c.glu, w.norms[slotFFNSubNorm], c.rstdF, N, I, q)
	}
	tap.backward("act", gradGlu)
	gradGate, gradUp := temp(N*I), temp(N*I)
	gluBackward(gradGate, gradUp, gradGlu, c.gate, c.up, q)
	tap.backward("gate", gradGate)
	tap.backward("up", gradUp)
	gradYn := temp(N * H)
	w.linears[slotGate].backward(gradYn, grads[slotGate], c.yn, gradGate, N)
	w.linears[slotUp].backward(gradYn, grads[slotUp], c.yn, gradUp, N)
	tap.backward("ffn_norm", gradYn)
	rmsNormBackward(gradH, grads[slotPostNorm], gradYn, c.h, w.norms[slotPostNorm], c.rstd2, N, H, q)
	tap.backward("h", gradH)
	// attention block: h = x + o(...), so gradX starts as gradH.
	if q.noResidualGrad {
		clear(gradX)
	} else {
		copy(gradX, gradH)
	}
	gradAttnNormed := temp(N * Q)
	w.linears[slotO].backward(gradAttnNormed, grads[slotO], c.attnNormed, gradH, N)
	tap.backward("attn_sub_norm", gradAttnNormed)
	gradAttn := gradAttnNormed
	if !q.noAttnSubNorm {
		gradAttn = temp(N * Q)
		rmsNormBackward(gradAttn, grads[slotAttnSubNorm], gradAttnNormed, c.attn, w.norms[slotAttnSubNorm], c.rstdA, N, Q, q)
	}
	tap.backward("attn", gradAttn)
	gradQ, gradK, gradV := temp(N*Q), temp(N*KV), temp(N*KV)
	attentionBackward(gradQ, gradK, gradV, gradAttn, c.att, c.q, c.k, c.v, d.attn(), q)
	ropeBackward(gradQ, rt, d.B, d.T, d.nh, q)
	ropeBackward(gradK, rt, d.B, d.T, d.nkv, q)
	tap.backward("q", gradQ)
	tap.backward("k", gradK)
	tap.backward("v", gradV)
	gradXn := temp(N * H)
	w.linears[slotQ].backward(gradXn, grads[slotQ], c.xn, gradQ, N)
	w.linears[slotK].backward(gradXn, grads[slotK], c.xn, gradK, N)
	w.linears[slotV].backward(gradXn, grads[slotV], c.xn, gradV, N)
	tap.backward("attn_norm", gradXn)
	rmsNormBackward(gradX, grads[slotInputNorm], gradXn, c.x, w.norms[slotInputNorm], c.rstd1, N, H, q)
}

// zeroed allocates n zeros for use as an accumulation target. The explicit
// clear makes the first touch of fresh pages a write: a read first would map
// the shared zero page and the write after it would take a copy-on-write
// fault with a TLB shootdown, which dominated the system time of the
// full-scale backward pass.
func zeroed[F float](n int) []F {
	s := make([]F, n)
	clear(s)
	return s
}

// bufferPool recycles activation-sized buffers within one network call,
// which uses it from one goroutine. Without it every layer would take fresh
// memory and the Go heap would grow to twice its live size before a
// collection; first touches of fresh pages cost ~10 µs each on the
// project's VM, which made up a third of the full-scale backward time.
type bufferPool[F float] struct{ free [][]F }

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

// headChunkRows bounds the rows of a non-dense lm_head converted at once.
const headChunkRows = 4096

// headForward: logits[N,V] = x[N,H] · Wᵀ, W[V,H] never quantized (unless
// q.quantizedLMHead, a wrong variant that makes it a BitLinear).
func headForward[F float](logits, x []F, w matrix[F], N, V, H int, q *quirks) {
	if q.quantizedLMHead {
		full := make([]F, V*H)
		w.rowsInto(full, 0, V)
		newFloatLinear(full, V, H, &quirks{}).forward(logits, x, N)
		return
	}
	if wd := w.dense(); wd != nil {
		matmulNT(logits, x, wd, N, V, H, false)
		return
	}
	rows := make([]F, headChunkRows*H)
	part := make([]F, N*headChunkRows)
	for v0 := 0; v0 < V; v0 += headChunkRows {
		c := min(headChunkRows, V-v0)
		w.rowsInto(rows, v0, v0+c)
		matmulNT(part, x, rows[:c*H], N, c, H, false)
		for n := 0; n < N; n++ {
			copy(logits[n*V+v0:n*V+v0+c], part[n*c:n*c+c])
		}
	}
}

// headBackward: gradX[N,H] += gradLogits·W and gradW[V,H] = gradLogitsᵀ·x
// (overwritten, so that a fresh multi-gigabyte buffer is never read before
// it is written: reading untouched pages maps the shared zero page, and the
// copy-on-write faults that follow cost more than the product).
func headBackward[F float](gradX, gradW, gradLogits, x []F, w matrix[F], N, V, H int, q *quirks) {
	if q.noHeadInputGrad {
		gradX = make([]F, len(gradX)) // computed, then dropped
	}
	if wd := w.dense(); wd != nil {
		matmulNN(gradX, gradLogits, wd, N, H, V, true)
		matmulTN(gradW, gradLogits, x, V, H, N, false)
		return
	}
	rows := make([]F, headChunkRows*H)
	part := make([]F, N*headChunkRows)
	for v0 := 0; v0 < V; v0 += headChunkRows {
		c := min(headChunkRows, V-v0)
		w.rowsInto(rows, v0, v0+c)
		for n := 0; n < N; n++ {
			copy(part[n*c:n*c+c], gradLogits[n*V+v0:n*V+v0+c])
		}
		matmulNN(gradX, part[:N*c], rows[:c*H], N, H, c, true)
		matmulTN(gradW[v0*H:(v0+c)*H], part[:N*c], x, c, H, N, false)
	}
}

// network is the whole model for one float type.
type network[F float] struct {
	d         dims
	embed     matrix[F]
	head      matrix[F] // the embedding when tied
	tied      bool
	finalNorm []F
	// layer returns layer i's prepared weights.
	layer  func(i int) (*layerWeights[F], error)
	layers int
	names  func(i, slot int) string
	q      *quirks
	// teacher, when set, feeds every op golden inputs (teacher.go).
	teacher *teacher[F]
	// checkpoint keeps only each layer's input in the forward pass of
	// gradients; the backward pass recomputes the layer's forward from it
	// (activation checkpointing). The recomputation gives the same bits,
	// so the gradients are those of the kept activations. A teacher
	// rewrites activations as they are computed, so it keeps them all.
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
func (net *network[F]) recomputes() bool { return net.checkpoint && net.teacher == nil }

// forwardResult holds the outputs and, for backward, the saved activations.
type forwardResult[F float] struct {
	logits    []F   // [N,V]
	hidden    [][]F // L+1 residual streams [N,H]
	finalNorm []F   // [N,H]
	rstdFinal []F
	caches    []*layerCache[F]
	rt        ropeTable[F]
	pool      *bufferPool[F] // recycles the activations of finished layers
}

func (net *network[F]) forward(ids []int32, keep bool) (*forwardResult[F], error) {
	d := net.d
	N, H := d.N(), d.H
	r := &forwardResult[F]{rt: newRopeTable[F](d.T, d.hd, d.theta), pool: &bufferPool[F]{}}
	x := make([]F, N*H)
	embeddingForward(x, net.embed, ids, H, net.q)
	net.teacher.tap("hidden.0", x)
	r.hidden = append(r.hidden, x)
	for i := 0; i < net.layers; i++ {
		w, err := net.layer(i)
		if err != nil {
			return nil, err
		}
		out := make([]F, N*H)
		c := layerForward(out, x, w, d, r.rt, net.q, r.pool, layerTap[F]{net.teacher, i})
		net.teacher.tap(fmt.Sprintf("hidden.%d", i+1), out)
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
	rmsNormForward(r.finalNorm, r.rstdFinal, x, net.finalNorm, N, H, d.eps, net.q)
	net.teacher.tap("final_norm", r.finalNorm)
	r.logits = make([]F, N*d.V)
	headForward(r.logits, r.finalNorm, net.head, N, d.V, H, net.q)
	net.teacher.tap("logits", r.logits)
	return r, nil
}

// gradients runs forward and backward and hands each parameter's gradient
// to visit exactly once (the slice may be reused after visit returns).
func (net *network[F]) gradients(ids []int32, visit func(name string, grad []F)) (float64, error) {
	d := net.d
	N, H, V := d.N(), d.H, d.V
	r, err := net.forward(ids, true)
	if err != nil {
		return 0, err
	}
	gradLogits := make([]F, N*V)
	loss := crossEntropyForward(gradLogits, r.logits, ids, d.B, d.T, V, net.q)
	net.teacher.tap("grad.logits", gradLogits)

	// headBackward overwrites gradHead; for a tied model the lookup path
	// then adds into the same buffer.
	gradHead := make([]F, V*H)
	gradFinal := zeroed[F](N * H)
	headBackward(gradFinal, gradHead, gradLogits, r.finalNorm, net.head, N, V, H, net.q)
	net.teacher.tap("grad.final_norm", gradFinal)
	if !net.tied {
		visit("lm_head.weight", gradHead)
	}
	gradX := make([]F, N*H)
	gradNorm := zeroed[F](H)
	rmsNormBackward(gradX, gradNorm, gradFinal, r.hidden[net.layers], net.finalNorm, r.rstdFinal, N, H, net.q)
	net.teacher.tap(fmt.Sprintf("grad.hidden.%d", net.layers), gradX)
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
				out, in := l.dims()
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
			c = layerForward(out, r.hidden[i], w, d, r.rt, net.q, r.pool, layerTap[F]{})
			r.pool.put(out)
		}
		layerBackward(gradIn, gradX, w, c, &grads, d, r.rt, net.q, r.pool, layerTap[F]{net.teacher, i})
		net.teacher.tap(fmt.Sprintf("grad.hidden.%d", i), gradIn)
		r.pool.put(c.buffers()...)
		r.caches[i] = nil
		for slot := range grads {
			visit(net.names(i, slot), grads[slot])
		}
		gradX, gradIn = gradIn, gradX
	}
	var gradEmbed []F
	switch {
	case net.tied && !net.q.tiedGradOnePath:
		gradEmbed = gradHead
	case net.tied:
		gradEmbed = zeroed[F](V * H)
	default:
		// lm_head's gradient was visited: its memory holds the embedding's.
		clear(gradHead)
		gradEmbed = gradHead
	}
	embeddingBackward(gradEmbed, gradX, ids, H, net.q)
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
