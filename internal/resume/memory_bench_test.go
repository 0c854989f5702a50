package resume

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vodpipe/vodpipe/internal/testharness"
	"github.com/vodpipe/vodpipe/internal/upload"
)

// usedMemory is redis-server's used_memory.
func usedMemory(b *testing.B, c *redis.Client) int64 {
	info, err := c.Info(b.Context(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

// BenchmarkRedisMemoryPerJob measures what Redis keeps per job a worker
// finished (docs/operations.md, "Redis"): a job of one part as P3 runs it
// (the lease with its state, the VOD session with the barrier before the
// commit, the commit with the lease's release), with ids, keys and URLs of
// the lengths VOD and vodpipe give them. The state stays for
// DefaultStateTTL (24 h) after its last write.
func BenchmarkRedisMemoryPerJob(b *testing.B) {
	c := testharness.StartRedis(b).Client(b)
	ctx := b.Context()
	s := NewRedis(c)
	before := usedMemory(b, c)
	i := 0
	for b.Loop() {
		i++
		l, _, err := s.AcquireLoad(ctx, fmt.Sprintf("f-%020x", uint64(i)*0x9E3779B97F4A7C15), "worker-1", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		sess := upload.Session{
			VodSessionKey: strings.Repeat("k", 64), Opened: time.Now(), Bucket: "vodgzp1250000000-1250000000",
			Region: "ap-guangzhou", VideoKey: fmt.Sprintf("1250000000/%024x/%012d.mp4", i, i), PartSize: 8 << 20, Size: 64 << 10,
		}
		if err := s.SaveSessionBeforeCommit(ctx, l, sess); err != nil {
			b.Fatal(err)
		}
		if err := s.SaveCommitRelease(ctx, l, fmt.Sprintf("52858907%011d", i),
			fmt.Sprintf("http://1250000000.vod2.myqcloud.com/1250000000/%024x/%012d.mp4", i, i), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(usedMemory(b, c)-before)/float64(b.N), "redis-B/job")
}
