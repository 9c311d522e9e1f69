//go:build unix

package tensorfile

import (
	"os"
	"syscall"
	"unsafe"
)

// mapFile maps size bytes of f read-only and returns the bytes with the
// function that unmaps them.
func mapFile(f *os.File, size int) ([]byte, func() error, error) {
	data, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}

// dropPages tells the system that the whole pages inside data, a part of a
// file mapping, are not needed now: they leave the process's resident set
// and are read back from the file if touched again.
func dropPages(data []byte) {
	page := syscall.Getpagesize()
	start := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	skip := int((uintptr(page) - start%uintptr(page)) % uintptr(page))
	if skip >= len(data) {
		return
	}
	n := (len(data) - skip) / page * page
	if n > 0 {
		_ = syscall.Madvise(data[skip:skip+n], syscall.MADV_DONTNEED)
	}
}
