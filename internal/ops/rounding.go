package ops

import "math"

// Rounding is how the quantizers decide their rounding. The zero value is
// the reference: every scaled input rounded half to even, as torch rounds.
//
// A non-zero Seed is not a bug but an alternative correct run, for
// measuring how far correct computations land from each other (a golden
// case's spread): runs that differ only in floating-point rounding, which
// flip the quantizers' near-tie decisions differently. Such a run
// multiplies every quantizer input (each act_quant input element and each
// latent weight before weight_quant rounds it) by (1 + ε), with ε uniform
// in [-2^-21, 2^-21] (about four float32 ulps, the size of a
// summation-order difference), as golden-format.md defines for the
// generator's own spread. ε is a hash of the seed, the element's index and
// its bits, so the forward pass and the backward pass's re-quantization of
// the same input agree and the result does not depend on the number of
// threads. On top of that it decides every near-tie (a pre-rounding value
// within 2^-18 of itself from a rounding boundary) at random, and run 1
// flips them all: a correct implementation whose own rounding lands on the
// other side of such a tie must not fall outside the spread only because
// the ±2^-21 perturbations happened to leave that tie alone.
//
// The integer kernels implement only the reference rounding.
type Rounding struct{ Seed uint64 }

// Reference reports whether r is the reference rounding.
func (r Rounding) Reference() bool { return r.Seed == 0 }

// jitterScale is the largest |ε|.
const jitterScale = 1.0 / (1 << 21)

// nearTieWindow is the relative distance from a rounding boundary within
// which an alternative run decides the rounding at random.
const nearTieWindow = 1.0 / (1 << 18)

// input is quantizer input element i, holding v, as this run sees it:
// v·(1+ε) in an alternative run, else v.
func input[F Float](r Rounding, v F, i int) F {
	if r.Seed == 0 {
		return v
	}
	return F(float64(v) * jitterFactor(r.Seed, i, float64(v)))
}

// round rounds the pre-rounding value v of quantizer element i: half to
// even, except that in an alternative run a value within nearTieWindow·|v|
// of a rounding boundary (k+½) takes either neighbouring code: the
// opposite of the reference in run 1, a side drawn from the seed in later
// runs.
func (r Rounding) round(v float64, i int) float64 {
	even := math.RoundToEven(v)
	if r.Seed == 0 {
		return even
	}
	lo := math.Floor(v)
	if math.Abs(v-lo-0.5) > nearTieWindow*math.Abs(v) {
		return even
	}
	if r.Seed == 1 {
		if even == lo {
			return lo + 1
		}
		return lo
	}
	if jitterFactor(r.Seed^0x5bd1e995, i, v) > 1 {
		return lo + 1
	}
	return lo
}

// jitterFactor is 1 + ε for element i holding v.
func jitterFactor(seed uint64, i int, v float64) float64 {
	h := seed ^ uint64(i)*0x9e3779b97f4a7c15 ^ math.Float64bits(v)*0xbf58476d1ce4e5b9
	h ^= h >> 31
	h *= 0x94d049bb133111eb
	h ^= h >> 29
	u := float64(h>>11) / (1 << 53) // [0, 1)
	return 1 + (2*u-1)*jitterScale
}
