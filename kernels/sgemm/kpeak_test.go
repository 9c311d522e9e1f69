package sgemm

import "testing"

func BenchmarkKernelPeak(b *testing.B) {
	for _, kr := range kernels() {
		b.Run(kr.name, func(b *testing.B) {
			kc := 256
			a := make([]float32, kc*kr.mr)
			bb := make([]float32, kc*kr.nr)
			c := make([]float32, kr.mr*kr.nr)
			for b.Loop() {
				kr.fn(kc, a, bb, c, kr.nr, true)
			}
			b.ReportMetric(2*float64(kc*kr.mr*kr.nr)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}
