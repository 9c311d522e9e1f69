package model

import (
	"math"
	"runtime"
	"sync"
)

// initChunk is the number of elements drawn from one random stream. Each
// chunk of each tensor has its own stream seeded from (seed, tensor index,
// chunk index), so chunks can be filled in any order on any number of
// threads and the weights depend on the seed alone.
const initChunk = 1 << 18

// initParams fills linear, embedding and lm_head weights with N(0, std) and
// norm weights with 1.
func initParams(params []*Param, seed uint64, std float64) {
	type job struct{ param, chunk int }
	var jobs []job
	for i, p := range params {
		n := Elements(p.shape)
		for c := 0; c*initChunk < n; c++ {
			jobs = append(jobs, job{i, c})
		}
	}
	next := make(chan job, 64)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]float32, initChunk)
			for j := range next {
				p := params[j.param]
				lo := j.chunk * initChunk
				hi := min(lo+initChunk, Elements(p.shape))
				vals := buf[:hi-lo]
				if p.spec.Kind == KindNorm {
					for i := range vals {
						vals[i] = 1
					}
				} else {
					newNormalSource(seed, uint64(j.param), uint64(j.chunk)).fill(vals, std)
				}
				if p.bf16 != nil {
					dst := p.bf16[lo:hi]
					for i, v := range vals {
						dst[i] = bf16Round(v)
					}
				} else {
					copy(p.f32[lo:hi], vals)
				}
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	runtime.KeepAlive(params) // they own the mappings written above
}

// normalSource draws standard normal numbers with the ziggurat method of
// Marsaglia and Tsang (2000), 256 layers, from a splitmix64 stream (two
// 32-bit draws per 64-bit output). fill keeps the stream state in registers,
// which makes it several times faster than math/rand/v2's NormFloat64
// through its Source interface; that matters for the 2.4e9 weights of the
// full-scale model.
type normalSource struct {
	state uint64
}

func newNormalSource(seed, tensor, chunk uint64) *normalSource {
	s := &normalSource{state: seed}
	s.state = s.uint64() ^ tensor*0xd1b54a32d192ed03
	s.state = s.uint64() ^ chunk*0xabc98388fb8fac03
	s.state = s.uint64()
	return s
}

const splitmixGamma = 0x9e3779b97f4a7c15

func splitmix(state uint64) uint64 {
	z := state
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (s *normalSource) uint64() uint64 {
	s.state += splitmixGamma
	return splitmix(s.state)
}

// uniform is in (0, 1).
func (s *normalSource) uniform() float64 {
	return (float64(s.uint64()>>11) + 0.5) / (1 << 53)
}

const (
	zigLayers = 256
	zigR      = 3.6541528853610088 // start of the tail
	zigV      = 4.92867323399e-3   // area of each layer
	zigScale  = 2147483648.0       // 2^31: the draws are int32
)

// zigK, zigW, zigF are the ziggurat tables: a draw hz lands in layer
// i = hz mod 256; it is accepted at once when |hz| < zigK[i], and its value
// is hz·zigW[i]; zigF[i] = exp(-x_i²/2) at the layer's edge x_i.
var zigK [zigLayers]uint32
var zigW, zigF [zigLayers]float64

func init() {
	d := zigR
	t := d
	f := math.Exp(-0.5 * d * d)
	q := zigV / f
	zigK[0] = uint32(d / q * zigScale)
	zigK[1] = 0
	zigW[0] = q / zigScale
	zigW[zigLayers-1] = d / zigScale
	zigF[0] = 1
	zigF[zigLayers-1] = f
	for i := zigLayers - 2; i >= 1; i-- {
		d = math.Sqrt(-2 * math.Log(zigV/d+math.Exp(-0.5*d*d)))
		zigK[i+1] = uint32(d / t * zigScale)
		t = d
		zigF[i] = math.Exp(-0.5 * d * d)
		zigW[i] = d / zigScale
	}
}

// fill writes N(0, std²) numbers to dst.
func (s *normalSource) fill(dst []float32, std float64) {
	state := s.state
	i := 0
	for i < len(dst) {
		state += splitmixGamma
		z := splitmix(state)
		for half := 0; half < 2 && i < len(dst); half++ {
			hz := int32(uint32(z))
			z >>= 32
			layer := uint32(hz) & (zigLayers - 1)
			abs := uint32(hz)
			if hz < 0 {
				abs = -abs
			}
			if abs < zigK[layer] {
				dst[i] = float32(float64(hz) * zigW[layer] * std)
				i++
				continue
			}
			s.state = state
			x, ok := s.edge(hz, layer)
			state = s.state
			if ok {
				dst[i] = float32(x * std)
				i++
			}
		}
	}
	s.state = state
}

// edge handles a draw outside its layer's inner rectangle: the tail beyond
// zigR for layer 0, else a wedge test. ok = false rejects the draw.
func (s *normalSource) edge(hz int32, layer uint32) (x float64, ok bool) {
	if layer == 0 {
		for {
			x := -math.Log(s.uniform()) / zigR
			y := -math.Log(s.uniform())
			if y+y >= x*x {
				if hz > 0 {
					return zigR + x, true
				}
				return -zigR - x, true
			}
		}
	}
	x = float64(hz) * zigW[layer]
	return x, zigF[layer]+s.uniform()*(zigF[layer-1]-zigF[layer]) < math.Exp(-0.5*x*x)
}
