//go:build noasm || !amd64

package kernels

// packBF16On returns path p's packBlocksBF16 at scale; only the generic
// path exists here.
func packBF16On(_ Path, scale float32) packBlocksBF16 { return packBF16Generic(scale) }
