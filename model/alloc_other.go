//go:build !unix

package model

type mapping struct{}

// allocBF16 returns n zeroed bf16 values for p's storage.
func allocBF16(p *Param, n int) ([]uint16, error) { return make([]uint16, n), nil }

func releaseStorage(p *Param) {}
