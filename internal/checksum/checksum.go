// Package checksum computes and combines CRC-64/ECMA checksums the way COS
// reports them in x-cos-hash-crc64ecma.
//
// COS answers each UploadPart with the CRC of that part and, after
// CompleteMultipartUpload, the CRC of the whole object. Combining part CRCs
// lets an uploader (or a simulator) know the object's CRC without reading the
// object again, and check it against what COS reports.
package checksum

import (
	"hash/crc64"
	"math/bits"
	"sync"
)

// CRC64Table returns the table of CRC-64/ECMA as COS uses it: the one
// cos-go-sdk-v5 builds with crc64.MakeTable(crc64.ECMA) to check the
// x-cos-hash-crc64ecma header. The table is built on first use and must not be
// modified.
func CRC64Table() *crc64.Table {
	return crc64Table()
}

var crc64Table = sync.OnceValue(func() *crc64.Table {
	return crc64.MakeTable(crc64.ECMA)
})

// CombineCRC64 returns the CRC-64/ECMA of the concatenation A||B given
// crc1 = CRC(A), crc2 = CRC(B) and len2 = len(B) in bytes, without the data.
// A len2 of zero or less returns crc1, as zlib's crc32_combine does.
//
// It is zlib's GF(2) matrix method: CRC(A||B) is CRC(A) advanced through
// len2 zero bytes, xor CRC(B). Go's pre- and post-inversion cancel out in that
// identity, so the values from crc64.Checksum combine directly. The cost is
// O(log len2) 64×64 bit-matrix squarings, independent of how much data B holds.
func CombineCRC64(crc1, crc2 uint64, len2 int64) uint64 {
	if len2 <= 0 {
		return crc1
	}
	zeroBytes(len2, func(op *gf2Matrix) { crc1 = op.times(crc1) })
	return crc1 ^ crc2
}

// PartCRC is the size and CRC-64/ECMA of one part of an object, as an
// UploadPart answer reports them.
type PartCRC struct {
	Size int64
	CRC  uint64
}

// CombineParts returns the CRC-64/ECMA of the parts' concatenation in order,
// which is what COS reports for the object after CompleteMultipartUpload.
// No parts give 0, the CRC of no data; parts of size zero or less add nothing,
// as in CombineCRC64.
func CombineParts(parts []PartCRC) uint64 {
	var (
		crc    uint64
		op     gf2Matrix
		opSize int64 = -1
	)
	for i, p := range parts {
		if p.Size <= 0 {
			continue
		}
		// A multipart object is mostly parts of one size. Building the
		// zero operator for that size once makes every further part one
		// matrix-vector product instead of log2(size) matrix squarings.
		if p.Size != opSize && i+1 < len(parts) && parts[i+1].Size == p.Size {
			op, opSize = zeroBytesOperator(p.Size), p.Size
		}
		if p.Size == opSize {
			crc = op.times(crc) ^ p.CRC
		} else {
			crc = CombineCRC64(crc, p.CRC, p.Size)
		}
	}
	return crc
}

// zeroBytesOperator returns the matrix that advances a CRC register through
// n > 0 zero bytes.
func zeroBytesOperator(n int64) gf2Matrix {
	var op gf2Matrix
	for c := range op {
		op[c] = 1 << c
	}
	zeroBytes(n, func(z *gf2Matrix) {
		for c := range op {
			op[c] = z.times(op[c])
		}
	})
	return op
}

// zeroBytes calls apply, in increasing k, with the operator for 2^k zero bytes
// for each bit k set in n > 0. Applying them all advances a CRC register
// through n zero bytes; the operators commute, so the order does not matter.
func zeroBytes(n int64, apply func(op *gf2Matrix)) {
	// odd starts as the operator for one zero bit. crc64.ECMA is already the
	// bit-reversed polynomial (0xC96C5795D7870F42) that Go's tables use, so
	// a zero bit shifts the register right and folds the polynomial back in
	// when the low bit falls out.
	var odd, even gf2Matrix
	odd[0] = crc64.ECMA
	for c := 1; c < 64; c++ {
		odd[c] = 1 << (c - 1)
	}
	even.square(&odd) // two zero bits
	odd.square(&even) // four zero bits

	// Each round squares the operator, so the first gives one zero byte
	// (eight bits), the next two bytes, and so on over the bits of n.
	// Squaring into the other matrix, as zlib does, avoids copying.
	cur, next := &odd, &even
	for {
		next.square(cur)
		if n&1 != 0 {
			apply(next)
		}
		n >>= 1
		if n == 0 {
			return
		}
		cur, next = next, cur
	}
}

// gf2Matrix is a 64×64 matrix over GF(2); column c is the image of bit c.
type gf2Matrix [64]uint64

// times returns m·vec. Only set bits of vec contribute, so it walks them
// directly instead of all 64 columns.
func (m *gf2Matrix) times(vec uint64) uint64 {
	var sum uint64
	for vec != 0 {
		sum ^= m[bits.TrailingZeros64(vec)]
		vec &= vec - 1
	}
	return sum
}

// square sets m to src·src, the operator that applies src twice.
func (m *gf2Matrix) square(src *gf2Matrix) {
	for n := range m {
		m[n] = src.times(src[n])
	}
}
