package checksum

import (
	"bytes"
	"fmt"
	"hash/crc64"
	"math/rand/v2"
	"testing"
)

func TestCRC64Table(t *testing.T) {
	tab := CRC64Table()
	if tab != CRC64Table() {
		t.Fatal("CRC64Table built a second table; want one shared table")
	}
	tests := []struct {
		name string
		data string
		want uint64
	}{
		{name: "empty", data: "", want: 0},
		// The catalogue check value of CRC-64/XZ, which is ECMA-182 with the
		// reflection and inversion Go's hash/crc64 applies: if this holds the
		// table is the one COS and cos-go-sdk-v5 use.
		{name: "check value", data: "123456789", want: 0x995DC9BBDF1939FA},
		{name: "one zero byte", data: "\x00", want: crc64.Checksum([]byte{0}, crc64.MakeTable(crc64.ECMA))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := crc64.Checksum([]byte(tt.data), tab); got != tt.want {
				t.Errorf("crc64.Checksum(%q) = %#016x, want %#016x", tt.data, got, tt.want)
			}
		})
	}
}

func TestCombineCRC64(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name       string
		lenA, lenB int
	}{
		{name: "both empty", lenA: 0, lenB: 0},
		{name: "empty A", lenA: 0, lenB: 17},
		{name: "empty B", lenA: 17, lenB: 0},
		{name: "one byte each", lenA: 1, lenB: 1},
		{name: "one byte B", lenA: 1000, lenB: 1},
		{name: "one byte A", lenA: 1, lenB: 1000},
		{name: "two bytes B", lenA: 5, lenB: 2},
		{name: "three bytes B", lenA: 5, lenB: 3},
		{name: "power of two B", lenA: 100, lenB: 4096},
		{name: "power of two plus one B", lenA: 100, lenB: 65537},
		{name: "power of two minus one B", lenA: 100, lenB: 65535},
		{name: "unaligned MiB", lenA: 1<<20 + 3, lenB: 1<<20 - 5},
		{name: "large B", lenA: 12345, lenB: 8<<20 + 1},
	}
	for i := range 40 {
		tests = append(tests, struct {
			name       string
			lenA, lenB int
		}{name: fmt.Sprintf("random %d", i), lenA: rng.IntN(1 << 16), lenB: rng.IntN(1 << 16)})
	}
	tab := CRC64Table()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := randomBytes(rng, tt.lenA+tt.lenB)
			a, b := data[:tt.lenA], data[tt.lenA:]
			want := crc64.Checksum(data, tab)
			got := CombineCRC64(crc64.Checksum(a, tab), crc64.Checksum(b, tab), int64(len(b)))
			if got != want {
				t.Errorf("CombineCRC64(len %d, len %d) = %#016x, want %#016x", len(a), len(b), got, want)
			}
		})
	}
}

func TestCombineCRC64NonPositiveLength(t *testing.T) {
	tests := []struct {
		name       string
		crc1, crc2 uint64
		len2       int64
	}{
		{name: "zero length, zero crc2", crc1: 0x0123456789ABCDEF, crc2: 0, len2: 0},
		// A zero-length B can only have CRC 0; whatever crc2 says, zlib's
		// contract is that crc1 comes back unchanged.
		{name: "zero length, stray crc2", crc1: 0x0123456789ABCDEF, crc2: 42, len2: 0},
		{name: "negative length", crc1: 0xFEDCBA9876543210, crc2: 7, len2: -1},
		{name: "most negative length", crc1: 1, crc2: 7, len2: -1 << 63},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CombineCRC64(tt.crc1, tt.crc2, tt.len2); got != tt.crc1 {
				t.Errorf("CombineCRC64(%#x, %#x, %d) = %#x, want crc1 %#x", tt.crc1, tt.crc2, tt.len2, got, tt.crc1)
			}
		})
	}
}

// TestCombineCRC64HugeLengths checks lengths too large to hash in a test
// (past 4 GiB, the 5 GiB part limit, and up to 2^62) against an independent
// oracle: polynomial arithmetic modulo the CRC polynomial, the method newer
// zlib uses instead of matrices. Small lengths tie the oracle to hash/crc64.
func TestCombineCRC64HugeLengths(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tab := CRC64Table()
	t.Run("oracle agrees with hash/crc64", func(t *testing.T) {
		for range 50 {
			data := randomBytes(rng, rng.IntN(4096))
			split := rng.IntN(len(data) + 1)
			a, b := data[:split], data[split:]
			want := crc64.Checksum(data, tab)
			if got := combineOracle(crc64.Checksum(a, tab), crc64.Checksum(b, tab), int64(len(b))); got != want {
				t.Fatalf("oracle(len %d, len %d) = %#x, want %#x", len(a), len(b), got, want)
			}
		}
	})
	tests := []struct {
		name string
		len2 int64
	}{
		{name: "4 GiB - 1", len2: 1<<32 - 1},
		{name: "4 GiB", len2: 1 << 32},
		{name: "4 GiB + 1", len2: 1<<32 + 1},
		{name: "5 GiB part limit", len2: 5 << 30},
		{name: "10000 parts of 5 GiB", len2: 10000 * (5 << 30)},
		{name: "2^62", len2: 1 << 62},
		{name: "max int64", len2: 1<<63 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 5 {
				crc1, crc2 := rng.Uint64(), rng.Uint64()
				got := CombineCRC64(crc1, crc2, tt.len2)
				if want := combineOracle(crc1, crc2, tt.len2); got != want {
					t.Fatalf("CombineCRC64(%#x, %#x, %d) = %#x, want %#x", crc1, crc2, tt.len2, got, want)
				}
			}
		})
	}
}

func TestCombineParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tests := []struct {
		name  string
		sizes []int
	}{
		{name: "no parts", sizes: nil},
		{name: "one part", sizes: []int{1000}},
		{name: "one empty part", sizes: []int{0}},
		{name: "two parts", sizes: []int{1 << 20, 12345}},
		{name: "empty parts between", sizes: []int{0, 10, 0, 0, 7, 0}},
		{name: "one-byte parts", sizes: []int{1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{name: "MiB parts with short last", sizes: []int{1 << 20, 1 << 20, 1 << 20, 1}},
		{name: "equal-size runs", sizes: []int{100, 100, 7, 7, 7, 100, 100, 0, 100, 100, 1, 1}},
		{name: "equal sizes then a repeat of an earlier size", sizes: []int{64, 64, 32, 32, 64, 64, 64}},
		{name: "many random parts", sizes: randomSizes(rng, 200, 3000)},
		{name: "many equal parts", sizes: repeatSize(257, 300)},
	}
	tab := CRC64Table()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var all bytes.Buffer
			parts := make([]PartCRC, 0, len(tt.sizes))
			for _, n := range tt.sizes {
				p := randomBytes(rng, n)
				all.Write(p)
				parts = append(parts, PartCRC{Size: int64(n), CRC: crc64.Checksum(p, tab)})
			}
			want := crc64.Checksum(all.Bytes(), tab)
			if got := CombineParts(parts); got != want {
				t.Errorf("CombineParts(%d parts) = %#016x, want %#016x", len(parts), got, want)
			}
			// Combining is associative, so a tree fold (as a caller merging
			// ranges out of order would do) must agree with the left fold.
			if got := combineTree(parts).CRC; got != want {
				t.Errorf("tree fold of %d parts = %#016x, want %#016x", len(parts), got, want)
			}
		})
	}
}

// TestCombinePartsHugeSizes folds part sizes up to COS's limits (10000 parts
// of 5 GiB) with arbitrary CRCs, against a fold of the oracle.
func TestCombinePartsHugeSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	tests := []struct {
		name  string
		sizes []int64
	}{
		{name: "10000 parts of 5 GiB", sizes: repeatSize(int64(5<<30), 10000)},
		{name: "5 GiB parts with short last", sizes: append(repeatSize(int64(5<<30), 50), 1)},
		{name: "mixed huge sizes", sizes: []int64{1 << 32, 1<<32 + 1, 1<<32 + 1, 3, 5 << 30, 1 << 40, 1 << 40}},
		// A part claiming size 0 adds nothing, even with a stray CRC.
		{name: "zero and negative sizes", sizes: []int64{10, 0, -5, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := make([]PartCRC, len(tt.sizes))
			var want uint64
			for i, n := range tt.sizes {
				parts[i] = PartCRC{Size: n, CRC: rng.Uint64()}
				want = combineOracle(want, parts[i].CRC, n)
			}
			if got := CombineParts(parts); got != want {
				t.Errorf("CombineParts = %#016x, want %#016x", got, want)
			}
		})
	}
}

// FuzzCombineCRC64 splits arbitrary data at an arbitrary point.
func FuzzCombineCRC64(f *testing.F) {
	f.Add([]byte(""), uint16(0))
	f.Add([]byte("123456789"), uint16(4))
	f.Add(bytes.Repeat([]byte{0xFF}, 300), uint16(299))
	tab := CRC64Table()
	f.Fuzz(func(t *testing.T, data []byte, at uint16) {
		split := int(at) % (len(data) + 1)
		a, b := data[:split], data[split:]
		want := crc64.Checksum(data, tab)
		if got := CombineCRC64(crc64.Checksum(a, tab), crc64.Checksum(b, tab), int64(len(b))); got != want {
			t.Errorf("CombineCRC64 split %d of %d = %#x, want %#x", split, len(data), got, want)
		}
	})
}

// combineTree folds parts pairwise, halving the list each round.
func combineTree(parts []PartCRC) PartCRC {
	switch len(parts) {
	case 0:
		return PartCRC{}
	case 1:
		return parts[0]
	}
	left, right := combineTree(parts[:len(parts)/2]), combineTree(parts[len(parts)/2:])
	return PartCRC{Size: left.Size + right.Size, CRC: CombineCRC64(left.CRC, right.CRC, right.Size)}
}

// combineOracle combines like zlib 1.2.12+'s crc32_combine64, widened to 64
// bits: CRC(A) times x^(8·len2) modulo the reflected polynomial, xor CRC(B).
// It shares no code with CombineCRC64, which is what makes it an oracle.
func combineOracle(crc1, crc2 uint64, len2 int64) uint64 {
	if len2 <= 0 {
		return crc1
	}
	// x^(2^k) mod P for k = 0..66 (len2 < 2^63, plus 3 for bits per byte),
	// in reflected bit order (x^0 is the top bit). zlib's 32-bit version
	// wraps k, relying on its polynomial's cycle; nothing says ECMA's has
	// the same one, so the table simply covers every k.
	var x2n [67]uint64
	p := uint64(1) << 62 // x^1
	x2n[0] = p
	for k := 1; k < len(x2n); k++ {
		p = multModP(p, p)
		x2n[k] = p
	}
	// x^(8·len2) = product of x^(2^k) over the set bits of len2, offset by
	// three because a byte is 2^3 bits.
	xn := uint64(1) << 63 // x^0
	for k, n := 3, uint64(len2); n != 0; k, n = k+1, n>>1 {
		if n&1 != 0 {
			xn = multModP(x2n[k], xn)
		}
	}
	return multModP(xn, crc1) ^ crc2
}

// multModP returns a·b modulo the reflected ECMA polynomial.
func multModP(a, b uint64) uint64 {
	var prod uint64
	for m := uint64(1) << 63; m != 0; m >>= 1 {
		if a&m != 0 {
			prod ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crc64.ECMA
		} else {
			b >>= 1
		}
	}
	return prod
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func repeatSize[T int | int64](size T, count int) []T {
	sizes := make([]T, count)
	for i := range sizes {
		sizes[i] = size
	}
	return sizes
}

func randomSizes(rng *rand.Rand, count, max int) []int {
	sizes := make([]int, count)
	for i := range sizes {
		sizes[i] = rng.IntN(max + 1)
	}
	return sizes
}
