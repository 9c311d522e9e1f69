package model

import "fmt"

// Tensor is a dense row-major float32 tensor.
type Tensor struct {
	Shape []int
	Data  []float32
}

// NewTensor allocates a zero tensor of the given shape.
func NewTensor(shape ...int) *Tensor {
	return &Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, Elements(shape))}
}

// Elements is the product of a shape.
func Elements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// ShapeString formats a shape as [a,b,c].
func ShapeString(shape []int) string {
	s := "["
	for i, d := range shape {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(d)
	}
	return s + "]"
}

// Batch is a batch of token ids: IDs[b*T+t] is token t of row b.
type Batch struct {
	B, T int
	IDs  []int32
}

// NewBatch builds a Batch from rows of equal length.
func NewBatch(rows [][]int32) (Batch, error) {
	if len(rows) == 0 || len(rows[0]) == 0 {
		return Batch{}, fmt.Errorf("input_ids: empty batch (B=%d)", len(rows))
	}
	T := len(rows[0])
	ids := make([]int32, 0, len(rows)*T)
	for b, row := range rows {
		if len(row) != T {
			return Batch{}, fmt.Errorf("input_ids: row %d has %d tokens, expected %d like row 0", b, len(row), T)
		}
		ids = append(ids, row...)
	}
	return Batch{B: len(rows), T: T, IDs: ids}, nil
}
