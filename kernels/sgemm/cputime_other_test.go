//go:build !unix

package sgemm

func cpuSeconds() float64 { return 0 }
