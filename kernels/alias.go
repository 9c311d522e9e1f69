package kernels

import "fmt"

// Alias-method draws for random initialisation (package model builds the
// table of the bf16 normal distribution and calls FillAlias for each chunk
// of a tensor).
//
// Element i of the stream keyed by key is the SplitMix64 output
//
//	z_i = mix(key + (i+1)·γ),  γ = 0x9e3779b97f4a7c15,
//	mix(z) = z' ^ z'>>31, z' = (z'' ^ z''>>27)·0x94d049bb133111eb, z'' = (z ^ z>>30)·0xbf58476d1ce4e5b9
//
// (Steele, Lea and Flood 2014, with Stafford's finaliser): a pure function of
// (key, i), so each lane of a vector computes its own element. Its top
// AliasBits bits pick a slot, bit AliasUnitBits the sign and its low
// AliasUnitBits bits, compared with the slot's threshold, choose between the
// slot's own magnitude and its alias. The reference loop:
//
//	for k := range dst {
//		z := AliasStream(key, first+k)
//		slot := z >> (64 - AliasBits)
//		if z&(1<<AliasUnitBits-1) >= entry[slot]>>AliasBits {
//			slot = entry[slot] & (AliasSlots - 1)
//		}
//		dst[k] = mag[slot] | uint16(z>>AliasUnitBits&1)<<15
//	}
//
// The generic path reads one packed word per draw (AliasTable.packed); the
// avx512vnni path computes 8 draws at a time with AVX-512 F and DQ (VPMULLQ
// for the finaliser) when the CPU has DQ too; the avx2 path, and avx512vnni
// on a CPU without DQ, run the generic loop. Every path gives the bits of
// the loop above.

// The alias table's shape.
const (
	// AliasBits is the number of bits of a draw that pick a slot.
	AliasBits = 13
	// AliasSlots is the number of slots (and magnitudes) of a table.
	AliasSlots = 1 << AliasBits
	// AliasUnitBits is the number of bits of the threshold compare: each
	// slot holds 2^AliasUnitBits units of probability.
	AliasUnitBits = 50
)

// aliasGamma is SplitMix64's increment, the odd integer nearest 2^64/φ.
const aliasGamma = 0x9e3779b97f4a7c15

// An AliasTable is a discrete distribution over AliasSlots 15-bit
// magnitudes, each drawn with a sign, in the form FillAlias draws from.
type AliasTable struct {
	// entry[i] = threshold<<AliasBits | alias: slot i keeps magnitude i
	// when a draw's low AliasUnitBits bits are below threshold.
	entry [AliasSlots]uint64
	mag   [AliasSlots]uint16
	// packed[i] holds all a draw usually needs of slot i in one word:
	// the top 34 of the threshold's 50 bits, then the alias's magnitude,
	// then the slot's own (packedThreshold, packedAlias, packedOwn). A
	// draw whose low 50 bits agree with the threshold in those 34 bits
	// (one in 2^34) takes the exact compare from entry. A full slot
	// (threshold 2^50) has its own magnitude as alias, so either choice
	// is right.
	packed [AliasSlots]uint64
}

// The fields of AliasTable.packed.
const (
	packedOwn       = 0  // 15 bits
	packedAlias     = 15 // 15 bits
	packedThreshold = 30 // threshold >> packedDropped, 34 bits
	packedDropped   = AliasUnitBits - (64 - packedThreshold)
)

// NewAliasTable returns the table that draws slot i's own magnitude mag[i]
// with probability threshold_i/2^AliasUnitBits, and mag[alias_i] otherwise,
// where entry[i] = threshold_i<<AliasBits | alias_i. It fails when a
// threshold exceeds 2^AliasUnitBits or a magnitude has its sign bit set.
func NewAliasTable(entry *[AliasSlots]uint64, mag *[AliasSlots]uint16) (*AliasTable, error) {
	t := &AliasTable{entry: *entry, mag: *mag}
	for i, e := range entry {
		if thr := e >> AliasBits; thr > 1<<AliasUnitBits {
			return nil, fmt.Errorf("kernels: alias slot %d: threshold %d above 2^%d", i, thr, AliasUnitBits)
		}
		if mag[i]>>15 != 0 {
			return nil, fmt.Errorf("kernels: alias slot %d: magnitude %#04x has the sign bit set", i, mag[i])
		}
		thr, alias := e>>AliasBits, mag[e&(AliasSlots-1)]
		if thr == 1<<AliasUnitBits {
			thr, alias = 1<<AliasUnitBits-1, mag[i]
		}
		t.packed[i] = thr>>packedDropped<<packedThreshold | uint64(alias)<<packedAlias | uint64(mag[i])<<packedOwn
	}
	return t, nil
}

// Entry returns slot i's threshold<<AliasBits | alias.
func (t *AliasTable) Entry(i int) uint64 { return t.entry[i] }

// Mag returns slot i's own magnitude.
func (t *AliasTable) Mag(i int) uint16 { return t.mag[i] }

// AliasStream returns z_i of the stream keyed by key, the 64-bit draw behind
// element i.
func AliasStream(key, i uint64) uint64 {
	return splitmixMix(key + (i+1)*aliasGamma)
}

func splitmixMix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// FillAlias writes elements first … first+len(dst)-1 of the stream keyed by
// key, drawn from t, to dst, on the active path.
func FillAlias(dst []uint16, t *AliasTable, key, first uint64) {
	fillAliasOn(ActivePath(), dst, t, key, first)
}

// FillAliasPath is FillAlias on path p, leaving the active path alone. It
// fails when p cannot run here.
func FillAliasPath(p Path, dst []uint16, t *AliasTable, key, first uint64) error {
	if err := checkPath(p); err != nil {
		return err
	}
	fillAliasOn(p, dst, t, key, first)
	return nil
}

// fillAliasGeneric is the reference loop with one table load per draw, from
// packed, and no branch on the compare (it would be mispredicted on a large
// share of the draws); a tie in the packed threshold's bits (one draw in
// 2^34) takes the exact compare from entry.
func fillAliasGeneric(dst []uint16, t *AliasTable, key, first uint64) {
	s := key + first*aliasGamma
	for k := range dst {
		s += aliasGamma
		z := splitmixMix(s)
		i := z >> (64 - AliasBits)
		r := t.packed[i]
		// the top 34 bits of z<<14 are the draw's compare bits 49..16
		zc := z << (64 - AliasUnitBits)
		m := r >> packedAlias
		if zc < r {
			m = r
		}
		if zc^r < 1<<packedThreshold {
			m = r >> packedAlias
			if z&(1<<AliasUnitBits-1) < t.entry[i]>>AliasBits {
				m = r
			}
		}
		dst[k] = uint16(m)&(1<<15-1) | uint16(z>>AliasUnitBits&1)<<15
	}
}
