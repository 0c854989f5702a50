package checksum

import (
	"hash/crc64"
	"math/rand/v2"
	"testing"
)

// TestUpdateMatchesTheTable checks the carry-less fold against hash/crc64 on
// every length around the fold's edges, at unaligned offsets, from nonzero
// registers and in pieces.
func TestUpdateMatchesTheTable(t *testing.T) {
	if !haveCLMUL {
		t.Skip("this CPU has no carry-less multiply: Update is the table's, nothing to compare")
	}
	eachForm(t, matchesTheTable)
}

// eachForm runs f with the fold's 256-bit form, where the CPU has it, and
// with the 128-bit form alone.
func eachForm(t *testing.T, f func(*testing.T)) {
	if haveVPCLMUL {
		t.Run("256-bit", f)
		defer setWide(true)
		setWide(false)
	}
	t.Run("128-bit", f)
}

func matchesTheTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 70_000)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	tab := crc64.MakeTable(crc64.ECMA)
	lengths := []int{0, 1, 15, 16, 127, 128, 129, 255, 256, 257, 383, 384, 385, 511, 512, 513, 767, 768, 769,
		1000, 4096, 32768, 65536, 69_000}
	for range 200 {
		lengths = append(lengths, rng.IntN(20_000))
	}
	for _, n := range lengths {
		for _, off := range []int{0, 1, 7, 13} {
			p := buf[off : off+n]
			for _, init := range []uint64{0, 0xdeadbeefcafef00d} {
				if got, want := Update(init, p), crc64.Update(init, tab, p); got != want {
					t.Fatalf("Update(%#x, %d bytes at +%d) = %#x, want %#x", init, n, off, got, want)
				}
			}
		}
	}
	// In pieces through the hash, as an upload's reader feeds it.
	h := NewCRC64()
	for p := buf; len(p) > 0; {
		k := min(len(p), 1+rng.IntN(9000))
		_, _ = h.Write(p[:k])
		p = p[k:]
	}
	if got, want := h.Sum64(), crc64.Checksum(buf, tab); got != want {
		t.Fatalf("in pieces: %#x, want %#x", got, want)
	}
}

func FuzzUpdate(f *testing.F) {
	// Seeds at the folds' edges: under the fold's least, one 128-byte
	// round and one 256-byte round, and a tail past each.
	for i, n := range []int{255, 256, 257, 383, 511, 512, 513, 1000} {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(j*31 + i)
		}
		f.Add(uint64(i)*0x9E3779B97F4A7C15, p)
	}
	tab := crc64.MakeTable(crc64.ECMA)
	f.Fuzz(func(t *testing.T, init uint64, p []byte) {
		if got, want := Update(init, p), crc64.Update(init, tab, p); got != want {
			t.Fatalf("Update(%#x, %d bytes) = %#x, want %#x", init, len(p), got, want)
		}
	})
}

func BenchmarkCRC64(b *testing.B) {
	p := make([]byte, 32<<10)
	for i := range p {
		p[i] = byte(i * 7)
	}
	tab := crc64.MakeTable(crc64.ECMA)
	b.Run("table", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			crc64.Update(0, tab, p)
		}
	})
	fold := func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			Update(0, p)
		}
	}
	if haveVPCLMUL {
		b.Run("vpclmul", fold)
		defer setWide(true)
		setWide(false)
	}
	b.Run("clmul", fold)
}
