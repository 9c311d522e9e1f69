//go:build unix

package model

import (
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

// mapping is an anonymous memory mapping outside the Go heap.
type mapping struct {
	mem  []byte
	once sync.Once
}

func (m *mapping) release() {
	if m != nil {
		m.once.Do(func() { _ = syscall.Munmap(m.mem) })
	}
}

// allocBF16 returns n zeroed bf16 values for p's storage. The memory is an
// anonymous mapping outside the Go heap, released by releaseStorage or once
// p is unreachable: multi-gigabyte parameters on the heap would let the
// garbage collector grow the heap to twice their size before collecting
// temporaries. Every Param method that touches the slice keeps p alive
// until it is done with it.
func allocBF16(p *Param, n int) []uint16 {
	if n == 0 {
		return []uint16{}
	}
	mem, err := syscall.Mmap(-1, 0, 2*n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]uint16, n)
	}
	m := &mapping{mem: mem}
	p.mapping = m
	runtime.AddCleanup(p, func(m *mapping) { m.release() }, m)
	return unsafe.Slice((*uint16)(unsafe.Pointer(&mem[0])), n)
}

// releaseStorage frees p's mapped storage now; p.bf16 must not be used after.
func releaseStorage(p *Param) {
	p.mapping.release()
	p.mapping = nil
}
