//go:build !amd64 || noasm

package sgemm

func bestKernel() kernel { return genericKernel }

// kernels lists every kernel usable on this machine (for tests).
func kernels() []kernel { return []kernel{genericKernel} }
