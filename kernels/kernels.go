// Package kernels holds the integer kernels of a BitNet b1.58 linear layer:
// the per-token activation quantizer (act_quant), the online weight
// quantizer (weight_quant) and a ternary-weight × int8-activation matrix
// product with a pure-Go reference path and SIMD paths for amd64.
//
// The path is chosen once at start-up from the CPU features (the best
// supported one). The environment variable KERNELS_PATH forces a path
// (generic, avx2 or avx512vnni); a bad value never panics, it is kept in
// EnvError and the best path stays active. Building with the noasm tag, or
// for a non-amd64 target, leaves only the generic path.
package kernels

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
)

// Path names one implementation of the kernels.
type Path string

// The known paths, from slowest to fastest.
const (
	// Generic is the pure-Go reference path; it runs everywhere.
	Generic Path = "generic"
	// AVX2 uses VPMADDUBSW on 256-bit vectors (amd64 with AVX2).
	AVX2 Path = "avx2"
	// AVX512VNNI uses VPDPBUSD on 512-bit vectors (amd64 with AVX-512 F, BW and VNNI).
	AVX512VNNI Path = "avx512vnni"
)

// knownPaths lists every path in order of preference, worst first.
var knownPaths = []Path{Generic, AVX2, AVX512VNNI}

// PathEnv is the environment variable that forces a path at start-up.
const PathEnv = "KERNELS_PATH"

var (
	active   atomic.Pointer[Path]
	envError error
)

func init() {
	supported := SupportedPaths()
	best := supported[len(supported)-1]
	active.Store(&best)
	if value, ok := os.LookupEnv(PathEnv); ok && value != "" {
		if err := SetPath(Path(value)); err != nil {
			envError = fmt.Errorf("kernels: %s=%q ignored, keeping path %q: %w", PathEnv, value, best, err)
		}
	}
}

// SupportedPaths returns the paths this CPU and build can run, worst first;
// Generic is always the first element.
func SupportedPaths() []Path {
	var paths []Path
	for _, p := range knownPaths {
		if len(missingFeatures(p)) == 0 {
			paths = append(paths, p)
		}
	}
	return paths
}

// ActivePath returns the path MatMul currently uses.
func ActivePath() Path { return *active.Load() }

// SetPath makes p the active path. It fails, leaving the active path alone,
// when p is unknown or the CPU or build lacks what p needs.
func SetPath(p Path) error {
	if err := checkPath(p); err != nil {
		return err
	}
	active.Store(&p)
	return nil
}

// EnvError returns the error met while applying KERNELS_PATH at start-up, or
// nil when the variable was unset or valid.
func EnvError() error { return envError }

// checkPath returns an error naming p and why it cannot run here.
func checkPath(p Path) error {
	if !slices.Contains(knownPaths, p) {
		names := make([]string, len(knownPaths))
		for i, k := range knownPaths {
			names[i] = string(k)
		}
		return fmt.Errorf("kernels: unknown path %q, want one of %s", p, strings.Join(names, ", "))
	}
	if missing := missingFeatures(p); len(missing) > 0 {
		return fmt.Errorf("kernels: path %q is not supported here: missing %s", p, strings.Join(missing, ", "))
	}
	return nil
}
