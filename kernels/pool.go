package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Row-parallel scheduling. Waking a parked goroutine takes 70–100 µs on the
// project's VM, as long as a whole 2560×2560 GEMV, so helpers that just
// finished a job spin for spinWait before parking: back-to-back MatMuls (a
// decoder layer) find them awake. The caller always works too and claims
// chunks in turn with the helpers, so a late or descheduled helper delays
// nothing but its own chunk.
const (
	// minParallelWork is the number of multiply-adds below which MatMul
	// stays on the calling goroutine.
	minParallelWork = 1 << 18
	// chunksPerThread is how many row chunks each thread gets on average.
	chunksPerThread = 8
	// spinWait is how long an idle helper, or a caller waiting for the
	// helpers' last chunks, spins before parking.
	spinWait = 200 * time.Microsecond
)

// rowJob is one parallelRows call shared with the helpers.
type rowJob struct {
	fn           func(r0, r1 int)
	rows, groups int
	chunks       int64
	next         atomic.Int64 // next chunk to claim
	remaining    atomic.Int64 // chunks not finished yet
	done         chan struct{}
}

// run claims and computes chunks until none is left.
func (j *rowJob) run() {
	for {
		i := j.next.Add(1) - 1
		if i >= j.chunks {
			return
		}
		r0 := int(int64(j.groups) * i / j.chunks * rowGroup)
		r1 := min(int(int64(j.groups)*(i+1)/j.chunks*rowGroup), j.rows)
		j.fn(r0, r1)
		if j.remaining.Add(-1) == 0 {
			close(j.done)
		}
	}
}

// The helper pool: helpers run whatever job is posted, spinning for spinWait
// when there is none and then parking on wake. A finished job may run again
// until its caller withdraws it; it has no chunk left, so that is harmless.
var (
	posted    atomic.Pointer[rowJob]
	parked    atomic.Int64 // helpers blocked on wake, or about to be
	wake      = make(chan struct{}, runtime.NumCPU())
	helpersMu sync.Mutex
	helpers   int
)

func helper() {
	for {
		waitForJob().run()
	}
}

// waitForJob returns the posted job, spinning for spinWait and then parking
// until parallelRows sends on wake.
func waitForJob() *rowJob {
	start := time.Now()
	for i := 0; ; i++ {
		if job := posted.Load(); job != nil {
			return job
		}
		if i%64 != 63 {
			continue
		}
		runtime.Gosched() // let other goroutines have this P while we wait
		if time.Since(start) > spinWait {
			parked.Add(1)
			<-wake
			parked.Add(-1)
			start = time.Now()
		}
	}
}

// startHelpers makes sure n helpers exist.
func startHelpers(n int) {
	helpersMu.Lock()
	defer helpersMu.Unlock()
	for ; helpers < n; helpers++ {
		go helper()
	}
}

// parallelRows calls fn on contiguous chunks [r0, r1) covering [0, rows), on
// up to GOMAXPROCS threads when work (multiply-adds) is large enough. Every
// chunk but the last starts and ends on a multiple of rowGroup.
func parallelRows(rows, work int, fn func(r0, r1 int)) {
	groups := (rows + rowGroup - 1) / rowGroup
	threads := min(runtime.GOMAXPROCS(0), groups)
	if work < minParallelWork || threads <= 1 {
		fn(0, rows)
		return
	}
	startHelpers(threads - 1)
	chunks := min(groups, threads*chunksPerThread)
	job := &rowJob{fn: fn, rows: rows, groups: groups, chunks: int64(chunks), done: make(chan struct{})}
	job.remaining.Store(int64(chunks))
	posted.Store(job)
	// A helper that parks just after this check misses the job; the caller
	// then does its chunks, and nothing waits for the helper.
	for range min(int64(threads-1), parked.Load()) {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	job.run()
	// Wait for chunks still running on helpers, spinning first: they finish
	// within a chunk's time, sooner than a parked caller would wake.
	start := time.Now()
	for i := 0; job.remaining.Load() != 0; i++ {
		if i%64 != 63 {
			continue
		}
		runtime.Gosched()
		if time.Since(start) > spinWait {
			<-job.done
			break
		}
	}
	// Let go of fn and its buffers unless another call has posted since.
	posted.CompareAndSwap(job, nil)
}
