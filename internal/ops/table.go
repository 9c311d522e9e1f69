package ops

// Table is the set of ops one network runs, one entry per op of the
// model's computation (the ops the golden checks name). Reference gives
// this package's math for every entry. The conformance harness's
// self-test (internal/mutants) replaces single entries with deliberately
// wrong ones, through a Variant, to prove that each is caught at its op.
type Table[F Float] struct {
	Embedding EmbeddingOp[F]
	// The five RMSNorms: input_layernorm, attn_sub_norm,
	// post_attention_layernorm, ffn_sub_norm and model.norm.
	InputNorm, AttnSubNorm, PostNorm, FFNSubNorm, FinalNorm NormOp[F]
	// Linear is the float-path BitLinear of a latent weight w[out,in] (w
	// is not modified); QuantizedLinear that of an already quantized
	// weight wq[out,in] (offline checkpoints).
	Linear          func(w []F, out, in int, r Rounding) Linear[F]
	QuantizedLinear func(wq []F, out, in int, r Rounding) Linear[F]
	Rope            RopeOp[F]
	Attention       AttentionOp[F]
	GLU             GLUOp[F]
	// AttnResidual is h = x + o, MLPResidual out = h + down.
	AttnResidual, MLPResidual ResidualOp[F]
	Head                      HeadOp[F]
	CrossEntropy              func(gradLogits, logits []F, ids []int32, B, T, V int) float64
}

// The op pairs of a Table; each field's contract is that of the function
// of this package Reference puts there.
type (
	EmbeddingOp[F Float] struct {
		Forward  func(out []F, table Matrix[F], ids []int32, H int)
		Backward func(gradTable, gradOut []F, ids []int32, H int)
	}
	NormOp[F Float] struct {
		Forward  func(out, rstd, x, w []F, N, C int, eps float64)
		Backward func(gradX, gradW, gradOut, x, w, rstd []F, N, C int)
	}
	RopeOp[F Float] struct {
		Forward  func(x []F, rt RopeTable[F], B, T, heads int)
		Backward func(grad []F, rt RopeTable[F], B, T, heads int)
	}
	AttentionOp[F Float] struct {
		Forward  func(out, att, q, k, v []F, s AttnShape)
		Backward func(gradQ, gradK, gradV, gradOut, att, q, k, v []F, s AttnShape)
	}
	GLUOp[F Float] struct {
		Forward  func(out, gate, up []F)
		Backward func(gradGate, gradUp, gradOut, gate, up []F)
	}
	ResidualOp[F Float] struct {
		Forward  func(out, stream, branch []F)
		Backward func(gradStream, gradOut []F)
	}
	HeadOp[F Float] struct {
		Forward  func(logits, x []F, w Matrix[F], N, V, H int)
		Backward func(gradX, gradW, gradLogits, x []F, w Matrix[F], N, V, H int)
	}
)

// Reference is the table of the reference model.
func Reference[F Float]() Table[F] {
	norm := NormOp[F]{RMSNorm[F], RMSNormBackward[F]}
	residual := ResidualOp[F]{Residual[F], ResidualBackward[F]}
	return Table[F]{
		Embedding: EmbeddingOp[F]{Embedding[F], EmbeddingBackward[F]},
		InputNorm: norm, AttnSubNorm: norm, PostNorm: norm, FFNSubNorm: norm, FinalNorm: norm,
		Linear:          NewFloatLinear[F],
		QuantizedLinear: NewQuantizedLinear[F],
		Rope:            RopeOp[F]{Rope[F], RopeBackward[F]},
		Attention:       AttentionOp[F]{Attention[F], AttentionBackward[F]},
		GLU:             GLUOp[F]{GLU[F], GLUBackward[F]},
		AttnResidual:    residual,
		MLPResidual:     residual,
		Head:            HeadOp[F]{Head[F], HeadBackward[F]},
		CrossEntropy:    CrossEntropy[F],
	}
}

// A Variant changes the reference table: the zero Variant is the
// reference model. Edit32 and Edit64 run on a fresh copy of the reference
// table each time a network is built (once per Forward, Gradients or
// TeacherForced call), so a variant may keep state for one pass.
type Variant struct {
	Name   string
	Edit32 func(*Table[float32])
	Edit64 func(*Table[float64])
	// FloatPath: the variant changes what the integer kernels compute (a
	// quantizer or a BitLinear), so the model runs the float path even
	// when the kernels are asked for.
	FloatPath bool
}

// TableOf is the reference table edited by v.
func TableOf[F Float](v Variant) Table[F] {
	t := Reference[F]()
	switch t := any(&t).(type) {
	case *Table[float32]:
		if v.Edit32 != nil {
			v.Edit32(t)
		}
	case *Table[float64]:
		if v.Edit64 != nil {
			v.Edit64(t)
		}
	}
	return t
}
