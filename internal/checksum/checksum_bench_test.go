package checksum

import (
	"fmt"
	"hash/crc64"
	"testing"
	"time"
)

var benchSink uint64

// BenchmarkCombineCRC64 measures combining against the baseline it replaces:
// hashing B again onto CRC(A) with crc64.Update, timed in the same run. The
// speedup metric is baseline time / combine time.
func BenchmarkCombineCRC64(b *testing.B) {
	for _, n := range []int64{1 << 10, 1 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("len2=%d", n), func(b *testing.B) {
			tab := CRC64Table()
			data := make([]byte, n)
			crc1, crc2 := uint64(0x0123456789ABCDEF), crc64.Checksum(data, tab)
			baseline := timePerOp(func() { benchSink = crc64.Update(crc1, tab, data) })

			var ops int
			for b.Loop() {
				benchSink = CombineCRC64(crc1, crc2, n)
				ops++
			}
			b.ReportMetric(float64(baseline)/float64(b.Elapsed()/time.Duration(ops)), "speedup")
		})
	}
}

// BenchmarkCombineParts folds part CRCs of a 100-part object against the
// baseline of hashing the whole object, timed in the same run.
func BenchmarkCombineParts(b *testing.B) {
	for _, partSize := range []int64{64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("100x%d", partSize), func(b *testing.B) {
			tab := CRC64Table()
			part := make([]byte, partSize)
			whole := make([]byte, 0, 100*partSize)
			parts := make([]PartCRC, 100)
			for i := range parts {
				part[0] = byte(i)
				parts[i] = PartCRC{Size: partSize, CRC: crc64.Checksum(part, tab)}
				whole = append(whole, part...)
			}
			baseline := timePerOp(func() { benchSink = crc64.Checksum(whole, tab) })

			var ops int
			for b.Loop() {
				benchSink = CombineParts(parts)
				ops++
			}
			b.ReportMetric(float64(baseline)/float64(b.Elapsed()/time.Duration(ops)), "speedup")
		})
	}
}

// timePerOp runs f until at least 50 ms have passed and returns the mean
// duration of one call, so the baseline is stable without testing.Benchmark.
func timePerOp(f func()) time.Duration {
	var n int
	start := time.Now()
	for time.Since(start) < 50*time.Millisecond {
		f()
		n++
	}
	return time.Since(start) / time.Duration(n)
}
