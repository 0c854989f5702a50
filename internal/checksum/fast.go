package checksum

import (
	"encoding/binary"
	"hash"
	"hash/crc64"
	"math/bits"
)

// Update returns the CRC-64/ECMA of p appended to the data whose CRC is crc:
// crc64.Update(crc, CRC64Table(), p), the value cos-go-sdk-v5 and COS compute,
// at several times the speed where the CPU multiplies without carry
// (PCLMULQDQ on amd64): Go's table method runs at about 1.9 GB/s a core, so
// a worker sending 600 MB/s spent a third of a core on it (see BENCHMARKS.md,
// P1 limit). Short inputs, and CPUs without the instruction, take the table.
func Update(crc uint64, p []byte) uint64 {
	if haveCLMUL && len(p) >= clmulMin {
		var n int
		var lo, hi uint64
		if haveVPCLMUL && len(p) >= 2*wideBlock {
			n = len(p) &^ (wideBlock - 1)
			lo, hi = foldVPCLMUL(^crc, p[:n], &foldConsts)
		} else {
			n = len(p) &^ (foldBlock - 1)
			lo, hi = foldCLMUL(^crc, p[:n], &foldConsts)
		}
		var x [16]byte
		binary.LittleEndian.PutUint64(x[:8], lo)
		binary.LittleEndian.PutUint64(x[8:], hi)
		// The fold left 16 bytes whose CRC from a zero register is the
		// register after p[:n]: the table finishes them and the tail.
		crc = crc64.Update(^uint64(0), CRC64Table(), x[:])
		p = p[n:]
	}
	return crc64.Update(crc, CRC64Table(), p)
}

// NewCRC64 returns a hash.Hash64 of CRC-64/ECMA computed with Update.
func NewCRC64() hash.Hash64 { return new(crcDigest) }

type crcDigest struct{ crc uint64 }

func (d *crcDigest) Write(p []byte) (int, error) { d.crc = Update(d.crc, p); return len(p), nil }
func (d *crcDigest) Sum64() uint64               { return d.crc }
func (d *crcDigest) Reset()                      { d.crc = 0 }
func (d *crcDigest) Size() int                   { return 8 }
func (d *crcDigest) BlockSize() int              { return 1 }
func (d *crcDigest) Sum(in []byte) []byte        { return binary.BigEndian.AppendUint64(in, d.crc) }

const (
	// foldBlock is what the folding loop takes per round: 8 lanes of 16
	// bytes; wideBlock the 256-bit form's, 8 lanes of 32 bytes.
	foldBlock = 128
	wideBlock = 256
	// clmulMin is the shortest input worth the setup of the fold.
	clmulMin = 2 * foldBlock
	// ecmaPoly is CRC-64/ECMA's polynomial without its x^64 term, bit i the
	// coefficient of x^i.
	ecmaPoly = 0x42F0E1EBA9EA3693
)

// foldConsts are the multipliers of the fold, in the bit-reflected order the
// reflected CRC keeps its data (bit 0 is the highest power): a 128-bit lane
// X = Xh·x^64 + Xl moved d bits further is Xh·x^(d+64) + Xl·x^d, congruent
// modulo P to Xh·(x^(d+63) mod P)·x + Xl·(x^(d-1) mod P)·x, and a carry-less
// product of two reflected 64-bit values reads as their product times x. So
// each pair is (x^(d+63) mod P, x^(d-1) mod P): d = 1024 for the 8 lanes'
// rounds, d = 128 to fold one lane into the next, d = 2048 for the rounds of
// the 256-bit form.
var foldConsts = [6]uint64{
	reflectedXPowMod(1024 + 63), reflectedXPowMod(1024 - 1),
	reflectedXPowMod(128 + 63), reflectedXPowMod(128 - 1),
	reflectedXPowMod(2048 + 63), reflectedXPowMod(2048 - 1),
}

// reflectedXPowMod returns x^n mod P, bit-reflected into 64 bits.
func reflectedXPowMod(n int) uint64 {
	r := uint64(1)
	for range n {
		carry := r >> 63
		r <<= 1
		if carry != 0 {
			r ^= ecmaPoly
		}
	}
	return bits.Reverse64(r)
}
