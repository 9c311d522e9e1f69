package model

import (
	"fmt"
	"slices"

	"github.com/tritter-ai/conformance/internal/ops"
)

// BitLinear is one quantized linear layer on the float path:
// y[N,out] = linear(act_quant(x[N,in]), weight_quant(w[out,in])).
func BitLinear(x, w *Tensor) (*Tensor, error) {
	N, out, in, err := checkBitLinear(x, w)
	if err != nil {
		return nil, err
	}
	y := make([]float32, N*out)
	ops.NewFloatLinear(w.Data, out, in, ops.Rounding{}).Forward(y, x.Data, N)
	return toTensor(y, N, out), nil
}

// BitLinearKernels is BitLinear on the integer path, as the model runs its
// linears with ComputeKernels: act_quant to int8, the ternary×int8 GEMM of
// the active kernel path (int32 accumulators), then both scales.
func BitLinearKernels(x, w *Tensor) (*Tensor, error) {
	N, out, in, err := checkBitLinear(x, w)
	if err != nil {
		return nil, err
	}
	tw, err := quantizeWeight(w.Data, out, in, nil)
	if err != nil {
		return nil, err
	}
	y := make([]float32, N*out)
	kernelLinear{w: tw, s: &linearScratch{}}.Forward(y, x.Data, N)
	return toTensor(y, N, out), nil
}

// BitLinearBackward is BitLinear's straight-through backward pass for the
// upstream gradient gradY[N,out]: gradX = gradY·weight_quant(w) and
// gradW = gradYᵀ·act_quant(x).
func BitLinearBackward(x, w, gradY *Tensor) (gradX, gradW *Tensor, err error) {
	N, out, in, err := checkBitLinear(x, w)
	if err != nil {
		return nil, nil, err
	}
	if gradY == nil || !slices.Equal(gradY.Shape, []int{N, out}) || len(gradY.Data) != N*out {
		got := "nil"
		if gradY != nil {
			got = ShapeString(gradY.Shape)
		}
		return nil, nil, fmt.Errorf("bitlinear grad_y: expected shape %s, got %s", ShapeString([]int{N, out}), got)
	}
	gx, gw := make([]float32, N*in), make([]float32, out*in)
	ops.NewFloatLinear(w.Data, out, in, ops.Rounding{}).Backward(gx, gw, x.Data, gradY.Data, N)
	return toTensor(gx, N, in), toTensor(gw, out, in), nil
}

func checkBitLinear(x, w *Tensor) (N, out, in int, err error) {
	if w == nil || len(w.Shape) != 2 || w.Shape[0] <= 0 || w.Shape[1] <= 0 || len(w.Data) != Elements(w.Shape) {
		got := "nil"
		if w != nil {
			got = fmt.Sprintf("%s with %d values", ShapeString(w.Shape), len(w.Data))
		}
		return 0, 0, 0, fmt.Errorf("bitlinear weight: expected a non-empty [out,in] matrix, got %s", got)
	}
	out, in = w.Shape[0], w.Shape[1]
	if x == nil || len(x.Shape) != 2 || x.Shape[1] != in || x.Shape[0] <= 0 || len(x.Data) != Elements(x.Shape) {
		got := "nil"
		if x != nil {
			got = fmt.Sprintf("%s with %d values", ShapeString(x.Shape), len(x.Data))
		}
		return 0, 0, 0, fmt.Errorf("bitlinear x: expected a non-empty [N,%d] matrix, got %s", in, got)
	}
	return x.Shape[0], out, in, nil
}
