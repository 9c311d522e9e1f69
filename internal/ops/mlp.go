package ops

// ----------------------------------------------------------------------------
// gated relu² MLP activation

// GLU: out[N,I] = relu(gate)² · up.
func GLU[F Float](out, gate, up []F) {
	ParallelFor(len(out), 4, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var a F
			if g := gate[i]; g > 0 {
				a = g * g
			}
			out[i] = a * up[i]
		}
	})
}

// GLUBackward: gradGate += 2·relu(gate)·up·gradOut, gradUp += relu(gate)²·gradOut.
func GLUBackward[F Float](gradGate, gradUp, gradOut, gate, up []F) {
	ParallelFor(len(gradOut), 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if g, d := gate[i], gradOut[i]; g > 0 {
				gradGate[i] += 2 * g * up[i] * d
				gradUp[i] += g * g * d
			}
		}
	})
}

// ----------------------------------------------------------------------------
// residual

// Residual: out = stream + branch.
func Residual[F Float](out, stream, branch []F) {
	for i := range out {
		out[i] = stream[i] + branch[i]
	}
}

// ResidualBackward: the residual is the identity on both inputs, so the
// stream's gradient is gradOut (overwritten); the caller hands the same
// gradOut to the branch.
func ResidualBackward[F Float](gradStream, gradOut []F) {
	copy(gradStream, gradOut)
}
