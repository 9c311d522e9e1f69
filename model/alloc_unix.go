//go:build unix

package model

import (
	"fmt"
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
// until it is done with it. A mapping the system refuses is an error, not
// a fall-back to the Go heap, whose allocation failure would be a fatal
// "out of memory" that no caller can handle. The mapping asks for
// transparent huge pages (hugePages), which halve the first-touch cost.
func allocBF16(p *Param, n int) ([]uint16, error) {
	if n == 0 {
		return []uint16{}, nil
	}
	mem, err := syscall.Mmap(-1, 0, 2*n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mapping %d bf16 values (%d bytes): %v", n, 2*n, err)
	}
	hugePages(mem)
	m := &mapping{mem: mem}
	p.mapping = m
	runtime.AddCleanup(p, func(m *mapping) { m.release() }, m)
	return unsafe.Slice((*uint16)(unsafe.Pointer(&mem[0])), n), nil
}

// releaseStorage frees p's mapped storage now; p.bf16 must not be used after.
func releaseStorage(p *Param) {
	p.mapping.release()
	p.mapping = nil
}
