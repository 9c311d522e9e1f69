package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// benchShapes are the BitNet b1.58-2B-4T linear shapes [out, in].
var benchShapes = [][2]int{{2560, 2560}, {640, 2560}, {6912, 2560}, {2560, 6912}}

// BenchmarkMatMul reports GOPS = 2·rows·cols·T / wall time for every
// supported path, on one and two threads. It also reports cpu-GOPS/core, the
// same operations over the process CPU time: on a machine shared with other
// jobs the wall-clock figure drops with the CPU share this process gets, the
// per-core figure much less. other-cores is the CPU the rest of the machine
// used meanwhile, in cores: trust a two-thread figure only where it is near 0.
// The generic path runs GEMV only: its GEMM takes
// seconds per call.
func BenchmarkMatMul(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, p := range SupportedPaths() {
		for _, threads := range []int{1, 2} {
			for _, tokens := range []int{1, 16, 128, 256} {
				if p == Generic && tokens > 1 {
					continue
				}
				for _, s := range benchShapes {
					rows, cols := s[0], s[1]
					name := fmt.Sprintf("%s/threads=%d/T=%d/%dx%d", p, threads, tokens, rows, cols)
					b.Run(name, func(b *testing.B) {
						w, err := PackTernary(randomTernary(rng, rows*cols), rows, cols)
						if err != nil {
							b.Fatal(err)
						}
						x := randomInt8(rng, tokens*cols)
						dst := make([]int32, tokens*rows)
						defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(threads))
						cpuStart, busyStart := processCPUTime(), machineBusyTime()
						for b.Loop() {
							if err := w.MatMulPath(p, dst, x, tokens); err != nil {
								b.Fatal(err)
							}
						}
						ops := 2 * float64(rows) * float64(cols) * float64(tokens) * float64(b.N)
						b.ReportMetric(ops/b.Elapsed().Seconds()/1e9, "GOPS")
						cpu := processCPUTime() - cpuStart
						if cpu > 0 {
							b.ReportMetric(ops/cpu.Seconds()/1e9, "cpu-GOPS/core")
						}
						if busy := machineBusyTime() - busyStart; busy > 0 {
							b.ReportMetric(max(0, (busy-cpu).Seconds()/b.Elapsed().Seconds()), "other-cores")
						}
					})
				}
			}
		}
	}
}
