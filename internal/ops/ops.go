// Package ops is the math of the BitNet b1.58 reference model: each op of
// REFERENCE.md as a function, its forward next to its backward, in the
// style of llm.c. The model (package model) wires them into a network
// through a Table; nothing here knows about parameters, checkpoints or
// golden files.
//
// The ops are generic over float32 (the model) and float64 (ComputeFloat64
// and the finite-difference checks). Activations are row-major; N = B*T is
// the number of tokens. Forward functions write their output; backward
// functions accumulate (+=) into the input gradients unless their comment
// says otherwise, so that branches of the graph add up.
package ops

import (
	"runtime"
	"sync"

	"github.com/tritter-ai/conformance/kernels/sgemm"
)

// Float is the element type of the ops.
type Float interface{ ~float32 | ~float64 }

// ParallelFor splits [0, n) into contiguous blocks and runs fn on each block
// on its own goroutine. Callers only parallelise over independent outputs,
// so results never depend on the number of threads. work is a rough number
// of operations per index; tiny jobs run inline.
func ParallelFor(n, work int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	if workers <= 1 || n*work < 1<<15 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// ----------------------------------------------------------------------------
// matrix products (the float32 instantiations go to the shared GEMM kernels)

// MatmulNT: c[m,n] (+)= a[m,k] · b[n,k]ᵀ.
func MatmulNT[F Float](c, a, b []F, m, n, k int, accumulate bool) {
	if c32, ok := any(c).([]float32); ok {
		sgemm.NT(c32, any(a).([]float32), any(b).([]float32), m, n, k, accumulate)
		return
	}
	ParallelFor(m, n*k, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ai := a[i*k : i*k+k]
			for j := 0; j < n; j++ {
				bj := b[j*k : j*k+k]
				var s F
				for p := range ai {
					s += ai[p] * bj[p]
				}
				if accumulate {
					c[i*n+j] += s
				} else {
					c[i*n+j] = s
				}
			}
		}
	})
}

// MatmulNN: c[m,n] (+)= a[m,k] · b[k,n].
func MatmulNN[F Float](c, a, b []F, m, n, k int, accumulate bool) {
	if c32, ok := any(c).([]float32); ok {
		sgemm.NN(c32, any(a).([]float32), any(b).([]float32), m, n, k, accumulate)
		return
	}
	ParallelFor(m, n*k, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ci := c[i*n : i*n+n]
			if !accumulate {
				clear(ci)
			}
			for p := 0; p < k; p++ {
				aip := a[i*k+p]
				bp := b[p*n : p*n+n]
				for j := range ci {
					ci[j] += aip * bp[j]
				}
			}
		}
	})
}

// MatmulTN: c[m,n] (+)= a[k,m]ᵀ · b[k,n].
func MatmulTN[F Float](c, a, b []F, m, n, k int, accumulate bool) {
	if c32, ok := any(c).([]float32); ok {
		sgemm.TN(c32, any(a).([]float32), any(b).([]float32), m, n, k, accumulate)
		return
	}
	ParallelFor(m, n*k, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ci := c[i*n : i*n+n]
			if !accumulate {
				clear(ci)
			}
			for p := 0; p < k; p++ {
				api := a[p*m+i]
				bp := b[p*n : p*n+n]
				for j := range ci {
					ci[j] += api * bp[j]
				}
			}
		}
	})
}

// Matrix is a read-only [rows, cols] weight whose storage may differ from F.
type Matrix[F Float] interface {
	// RowsInto copies rows [lo, hi) into dst.
	RowsInto(dst []F, lo, hi int)
	// Dense returns the whole matrix as F without copying, or nil.
	Dense() []F
}

// DenseMatrix is a Matrix stored as F.
type DenseMatrix[F Float] struct {
	Data []F
	Cols int
}

func (m DenseMatrix[F]) RowsInto(dst []F, lo, hi int) { copy(dst, m.Data[lo*m.Cols:hi*m.Cols]) }
func (m DenseMatrix[F]) Dense() []F                   { return m.Data }
