//go:build unix && !linux

package model

// hugePages is a no-op where the kernel has no transparent huge pages.
func hugePages(mem []byte) {}
