package kernels_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"

	"github.com/tritter-ai/conformance/kernels"
)

// pathEntries builds, before RunSpecs, one Entry per supported kernel path
// and case, named "path <path>, <name of the case>"; each entry's
// arguments are the path and the case.
func pathEntries[C any](cases []C, name func(C) string) []TableEntry {
	var entries []TableEntry
	for _, p := range kernels.SupportedPaths() {
		for _, c := range cases {
			entries = append(entries, Entry(fmt.Sprintf("path %s, %s", p, name(c)), p, c))
		}
	}
	return entries
}
