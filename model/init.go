package model

import (
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tritter-ai/conformance/kernels"
)

// Random initialisation. The contract:
//
//   - Linear, embedding and lm_head weights are independent draws of σZ,
//     Z standard normal, σ = Config.InitStd(); norm weights are 1.
//   - bf16 storage: each weight is σZ rounded to the nearest bf16 (ties to
//     even), drawn from a table of the bf16 magnitudes around σ (bf16Normal).
//     Each magnitude's probability is the normal probability of its
//     rounding interval, rounded to a multiple of 2^-63. The table holds
//     zero and the 8191 largest magnitudes whose probability is at least
//     2^-64 (the largest is about 9σ, the smallest about 2^-61σ); the
//     mass of |σZ| below the smallest (about 2^-61) is drawn as ±0 and the
//     mass above the largest (below 2^-63) is never drawn.
//   - f32 storage: the same draw gives the same bf16 value, and a second
//     stream picks the float32 inside its rounding interval, by rejection
//     from the normal density there: the weight is σZ rounded to float32
//     (up to the two float32 values at the ends of each bf16 interval,
//     2^-16 of it, which are redrawn), and the bf16 model of a seed holds
//     exactly the f32 model's weights rounded to bf16 (the draws of ±0
//     are ±0 in both).
//   - Streams: each chunk of initChunk elements of each tensor has its own
//     streams, seeded from (seed, the tensor's position in the inventory,
//     chunk index), so chunks are filled in any order on any number of
//     threads. The draw of element i of a chunk is the SplitMix64 output
//     i of the chunk's key (kernels.AliasStream), a pure function of (key,
//     i) that the SIMD path computes 8 lanes at a time; every kernel path
//     gives the same bits. The weights depend on the seed alone, never on
//     GOMAXPROCS or the kernel path, and a streamed model regenerates any
//     layer with the values the resident model stores. They are not those
//     of older versions of this package: until issue 22's faster weight
//     making each chunk drew from one sequential wyrand stream, and
//     earlier still bf16 used a ziggurat as f32 does.

// initChunk is the number of elements drawn from one random stream.
const initChunk = 1 << 18

// initParams fills linear, embedding and lm_head weights with N(0, std) and
// norm weights with 1; params[i] draws from tensor stream i.
func initParams(params []*Param, seed uint64, std float64) {
	streams := make([]int, len(params))
	for i := range streams {
		streams[i] = i
	}
	initTensors(params, streams, seed, std)
}

// initTensors is initParams with params[i] drawing from tensor stream
// streams[i] (its position in the inventory), so that one tensor can be
// regenerated alone with the values it has in the whole model. The chunks
// of all the tensors are shared among GOMAXPROCS workers.
func initTensors(params []*Param, streams []int, seed uint64, std float64) {
	type job struct{ param, chunk int }
	var jobs []job
	for i, p := range params {
		n := Elements(p.shape)
		for c := 0; c*initChunk < n; c++ {
			jobs = append(jobs, job{i, c})
		}
	}
	tab := bf16NormalFor(std)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= len(jobs) {
					return
				}
				j := jobs[k]
				p := params[j.param]
				lo := j.chunk * initChunk
				hi := min(lo+initChunk, Elements(p.shape))
				norm := p.spec.Kind == KindNorm
				stream, chunk := uint64(streams[j.param]), uint64(j.chunk)
				switch {
				case p.bf16 != nil && norm:
					dst := p.bf16[lo:hi]
					one := bf16Round(1)
					for i := range dst {
						dst[i] = one
					}
				case p.bf16 != nil:
					tab.fill(p.bf16[lo:hi], newNormalSource(seed, stream, chunk).state)
				case norm:
					dst := p.f32[lo:hi]
					for i := range dst {
						dst[i] = 1
					}
				default:
					tab.fillF32(p.f32[lo:hi], newNormalSource(seed, stream, chunk).state, newNormalSource(seed^refineSalt, stream, chunk))
				}
			}
		}()
	}
	wg.Wait()
	runtime.KeepAlive(params) // they own the mappings written above
}

// refineSalt seeds the second stream of a chunk, which places f32 weights
// inside their bf16 intervals.
const refineSalt = 0x6a09e667f3bcc908

// bf16Normal draws σZ rounded to bf16 with the alias method (Walker 1977,
// in the form of Vose 1991), drawn by kernels.FillAlias: one 64-bit draw per
// weight, whose top 13 bits pick a slot, bit 50 the sign, and whose low 50
// bits are compared with the slot's threshold to choose between the slot's
// own magnitude and its alias. Slot i owns magnitude i; integer weights
// make the probability of each magnitude exactly its table weight over
// 2^63.
type bf16Normal struct {
	std float64
	// alias holds, for slot i, threshold<<aliasBits | alias (the slot
	// keeps magnitude i when the draw's low 50 bits are below threshold,
	// at most 2^50) and magnitude i.
	alias *kernels.AliasTable
	mag   [aliasSlots]uint16  // bf16 bit patterns, ascending; mag[0] = 0
	lo    [aliasSlots]float64 // each magnitude's rounding interval [lo, hi)
	hi    [aliasSlots]float64
}

const (
	aliasBits     = kernels.AliasBits
	aliasSlots    = kernels.AliasSlots
	aliasUnitBits = kernels.AliasUnitBits // bits of the threshold compare: each slot holds 2^50 units
	aliasTotal    = aliasSlots << aliasUnitBits
)

// bf16NormalTables caches one table per standard deviation.
var bf16NormalTables sync.Map // math.Float64bits(std) → *bf16Normal

func bf16NormalFor(std float64) *bf16Normal {
	key := math.Float64bits(std)
	if t, ok := bf16NormalTables.Load(key); ok {
		return t.(*bf16Normal)
	}
	t, _ := bf16NormalTables.LoadOrStore(key, newBF16Normal(std))
	return t.(*bf16Normal)
}

// bf16Interval is the interval of reals that round to the positive bf16
// pattern b (ties have probability zero and are left open at hi).
func bf16Interval(b uint16) (lo, hi float64) {
	v := float64(bf16Values[b])
	if b == 0 {
		return 0, float64(bf16Values[1]) / 2
	}
	prev := float64(bf16Values[b-1])
	lo = (prev + v) / 2
	if b == maxFiniteBF16 {
		return lo, v + (v-prev)/2
	}
	return lo, (v + float64(bf16Values[b+1])) / 2
}

const maxFiniteBF16 = 0x7f7f

// normalMass is P(lo ≤ |σZ| < hi) for 0 ≤ lo ≤ hi, accurate in relative
// terms both near zero (erf) and in the tail (erfc).
func normalMass(lo, hi, std float64) float64 {
	a, b := lo/(std*math.Sqrt2), hi/(std*math.Sqrt2)
	if a > 1 {
		return math.Erfc(a) - math.Erfc(b)
	}
	return math.Erf(b) - math.Erf(a)
}

func newBF16Normal(std float64) *bf16Normal {
	t := &bf16Normal{std: std}
	units := func(mass float64) uint64 { return uint64(math.Round(math.Ldexp(mass, 63))) }
	// top: the largest magnitude worth at least half a unit
	top := uint16(maxFiniteBF16)
	if start := bf16Round(float32(min(40*std, math.MaxFloat32))); start < top {
		top = start
	}
	for top > 1 {
		lo, hi := bf16Interval(top)
		if units(normalMass(lo, hi, std)) > 0 {
			break
		}
		top--
	}
	first := uint16(1)
	if top >= aliasSlots-1 {
		first = top - (aliasSlots - 2)
	}
	var weights [aliasSlots]uint64
	var sum uint64
	for i := 1; i < aliasSlots && first+uint16(i-1) <= top; i++ {
		b := first + uint16(i-1)
		t.mag[i] = b
		t.lo[i], t.hi[i] = bf16Interval(b)
		weights[i] = units(normalMass(t.lo[i], t.hi[i], std))
		sum += weights[i]
	}
	// zero takes the mass below the smallest magnitude
	t.lo[0], t.hi[0] = 0, t.lo[1]
	weights[0] = units(normalMass(0, t.hi[0], std))
	sum += weights[0]
	// rounding leaves the sum a few units off 2^63: the mode absorbs them
	mode := 0
	for i, w := range weights {
		if w > weights[mode] {
			mode = i
		}
	}
	weights[mode] += aliasTotal - sum // modular arithmetic: fine for either sign
	t.buildAlias(&weights)
	return t
}

// buildAlias makes t.alias from t.mag and integer weights summing to
// aliasTotal: each slot holds 2^aliasUnitBits units, its own magnitude's
// first and the rest lent to a magnitude of more than a slot's worth
// (Vose's method, in exact integers).
func (t *bf16Normal) buildAlias(weights *[aliasSlots]uint64) {
	const slot = uint64(1) << aliasUnitBits
	w := *weights
	var entry [aliasSlots]uint64
	var small, large []int
	for i, x := range w {
		if x < slot {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for i := range entry {
		entry[i] = slot<<aliasBits | uint64(i) // full slots keep their magnitude
	}
	for len(small) > 0 && len(large) > 0 {
		s := small[len(small)-1]
		small = small[:len(small)-1]
		l := large[len(large)-1]
		entry[s] = w[s]<<aliasBits | uint64(l)
		w[l] -= slot - w[s]
		if w[l] < slot {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	alias, err := kernels.NewAliasTable(&entry, &t.mag)
	if err != nil {
		panic(fmt.Sprintf("model: bf16 normal table for std %g: %v", t.std, err)) // thresholds ≤ slot, magnitudes positive
	}
	t.alias = alias
}

// fill writes bf16 weights to dst: elements 0 … len(dst)-1 of the stream
// keyed by key.
func (t *bf16Normal) fill(dst []uint16, key uint64) {
	kernels.FillAlias(dst, t.alias, key, 0)
}

// f32Block is the number of weights fillF32 draws as bf16 at a time.
const f32Block = 1024

// fillF32 writes float32 weights to dst: the bf16 values fill would draw
// from key, each refined inside its rounding interval with draws from
// refine.
func (t *bf16Normal) fillF32(dst []float32, key uint64, refine *normalSource) {
	inv := 1 / (2 * t.std * t.std)
	var codes [f32Block]uint16
	for start := 0; start < len(dst); start += f32Block {
		block := dst[start:min(start+f32Block, len(dst))]
		kernels.FillAlias(codes[:len(block)], t.alias, key, uint64(start))
		for i, c := range codes[:len(block)] {
			m, negative := c&0x7fff, c>>15 != 0
			if m == 0 {
				block[i] = math.Float32frombits(uint32(c) << 16) // ±0, as in bf16
				continue
			}
			// the table's magnitudes are consecutive from mag[1]
			j := int(m-t.mag[1]) + 1
			lo, hi := t.lo[j], t.hi[j]
			for {
				// uniform in [lo, hi), kept with probability f(x)/f(lo)
				x := lo + (hi-lo)*refine.uniform()
				if refine.uniform() >= math.Exp((lo*lo-x*x)*inv) {
					continue
				}
				f := float32(x)
				if bf16Round(f) != m {
					continue // rounded onto an end of the interval
				}
				if negative {
					f = -f
				}
				block[i] = f
				break
			}
		}
	}
}

// normalSource draws standard normal numbers (for tests and random inputs;
// weights come from bf16Normal) with the 256-layer ziggurat of
// Marsaglia and Tsang (2000) from a wyrand stream (Wang Yi's 64-bit
// generator: a Weyl sequence mixed by one 64×64→128-bit multiply). Each
// 64-bit draw gives a sample's layer (bits 0-7), sign (bit 8) and a 55-bit
// uniform position inside the layer (bits 9-63), so layer, sign and value
// are independent, unlike the classic 32-bit rnor that reuses the layer bits
// in the value. About 98.5% of draws are accepted at once with one table
// compare and one multiply; the rest go to slowNormal. Its seeding also
// gives the keys of bf16Normal's streams (the state after seeding).
type normalSource struct {
	state uint64
}

func newNormalSource(seed, tensor, chunk uint64) *normalSource {
	s := &normalSource{state: seed}
	s.state = splitmix(s.state+splitmixGamma) ^ tensor*0xd1b54a32d192ed03
	s.state = splitmix(s.state+splitmixGamma) ^ chunk*0xabc98388fb8fac03
	s.state = splitmix(s.state + splitmixGamma)
	return s
}

const splitmixGamma = 0x9e3779b97f4a7c15

func splitmix(state uint64) uint64 {
	z := state
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// wyrand constants.
const (
	wyP0 = 0xa0761d6478bd642f
	wyP1 = 0xe7037ed1a0b428db
)

func wymix(state uint64) uint64 {
	hi, lo := bits.Mul64(state, state^wyP1)
	return hi ^ lo
}

func (s *normalSource) uint64() uint64 {
	s.state += wyP0
	return wymix(s.state)
}

// uniform is in (0, 1).
func (s *normalSource) uniform() float64 {
	return (float64(s.uint64()>>11) + 0.5) / (1 << 53)
}

const (
	zigLayers = 256
	zigR      = 3.6541528853610088 // start of the tail
	zigV      = 4.92867323399e-3   // area of each layer
	zigBits   = 55                 // bits of the uniform inside a layer
	zigScale  = 1 << zigBits
)

// zigK, zigW, zigF are the ziggurat tables. A draw with uniform u in
// [0, 2^55) lands in layer i at |x| = u·zigW[i]; it is accepted at once when
// u < zigK[i] (x is inside the layer's inner rectangle). zigF[i] =
// exp(-x_i²/2) at the layer's edge x_i. Layer 0 is the base strip, a
// rectangle of area zigV/f(r) wide plus the tail beyond zigR; layer 1 is the
// top one.
var zigK [zigLayers]uint64
var zigW, zigF [zigLayers]float64

func init() {
	d := zigR
	t := d
	f := math.Exp(-0.5 * d * d)
	q := zigV / f
	zigK[0] = uint64(d / q * zigScale)
	zigK[1] = 0
	zigW[0] = q / zigScale
	zigW[zigLayers-1] = d / zigScale
	zigF[0] = 1
	zigF[zigLayers-1] = f
	for i := zigLayers - 2; i >= 1; i-- {
		d = math.Sqrt(-2 * math.Log(zigV/d+math.Exp(-0.5*d*d)))
		zigK[i+1] = uint64(d / t * zigScale)
		t = d
		zigF[i] = math.Exp(-0.5 * d * d)
		zigW[i] = d / zigScale
	}
}

// zigScaled holds the fast-path tables for one standard deviation, indexed
// by the low 9 bits of a draw (layer in bits 0-7, sign in bit 8): k is zigK
// and w is ±zigW·std, so the fast path needs no separate sign step.
type zigScaled struct {
	k [2 * zigLayers]uint64
	w [2 * zigLayers]float64
}

func newZigScaled(std float64) *zigScaled {
	t := new(zigScaled)
	for i := range t.k {
		t.k[i] = zigK[i%zigLayers]
		t.w[i] = zigW[i%zigLayers] * std
		if i >= zigLayers {
			t.w[i] = -t.w[i]
		}
	}
	return t
}

// fill writes N(0, std²) numbers to dst.
func (s *normalSource) fill(dst []float32, std float64) {
	s.fillScaled(dst, newZigScaled(std), std)
}

// fillScaled writes N(0, std²) numbers to dst; t = newZigScaled(std).
func (s *normalSource) fillScaled(dst []float32, t *zigScaled, std float64) {
	tab := *t // a local copy indexes off the stack pointer, without nil checks
	state := s.state
	for i := range dst {
		state += wyP0
		z := wymix(state)
		j := z & (2*zigLayers - 1)
		u := z >> (64 - zigBits)
		if u >= tab.k[j] {
			var x float64
			x, state = slowNormal(state, z)
			dst[i] = float32(x * std)
			continue
		}
		dst[i] = float32(float64(u) * tab.w[j])
	}
	s.state = state
}

// slowNormal finishes a draw z that fell outside its layer's inner
// rectangle: it runs the edge test and, on rejection, draws again until a
// sample is accepted. It returns the signed standard normal sample and the
// stream's new state.
//
//go:noinline
func slowNormal(state, z uint64) (float64, uint64) {
	for {
		layer := uint8(z)
		u := z >> (64 - zigBits)
		v, ok := float64(u)*zigW[layer], true
		if u >= zigK[layer] {
			v, ok, state = edge(state, u, layer)
		}
		if ok {
			if z>>8&1 != 0 {
				v = -v
			}
			return v, state
		}
		state += wyP0
		z = wymix(state)
	}
}

// edge handles a draw outside its layer's inner rectangle: the tail beyond
// zigR for layer 0, else a wedge test. It returns |x|; ok = false rejects
// the draw. Extra uniforms come from the stream after state, whose new
// state it returns.
//
//go:noinline
func edge(state, u uint64, layer uint8) (x float64, ok bool, next uint64) {
	s := normalSource{state}
	if layer == 0 {
		for {
			x := -math.Log(s.uniform()) / zigR
			y := -math.Log(s.uniform())
			if y+y >= x*x {
				return zigR + x, true, s.state
			}
		}
	}
	x = float64(u) * zigW[layer]
	ok = zigF[layer]+s.uniform()*(zigF[layer-1]-zigF[layer]) < math.Exp(-0.5*x*x)
	return x, ok, s.state
}
