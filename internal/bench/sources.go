package bench

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
)

// sources are the files the measurements upload, written once per run into
// one folder (the workers' source root) and shared between measurements.
type sources struct {
	root    string
	mu      sync.Mutex
	written map[string]bool // paths
}

func newSources(dir string) (*sources, error) {
	root := filepath.Join(dir, "sources")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	// The source root must be a real path: workers refuse symlinks that leave it.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	return &sources{root: root, written: map[string]bool{}}, nil
}

// file returns the path of the n-th random file of size bytes, writing it the
// first time it is asked for. Files of one size and n are shared by the
// measurements; different n give different contents.
func (s *sources) file(size int64, n int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	path := filepath.Join(s.root, fmt.Sprintf("random-%d-%d.mp4", size, n))
	if s.written[path] {
		return path, nil
	}
	if err := writeRandom(path, size, uint64(size)<<8|uint64(n)); err != nil {
		return "", err
	}
	s.written[path] = true
	return path, nil
}

// files returns the paths of n different random files of size bytes.
func (s *sources) files(size int64, n int) ([]string, error) {
	paths := make([]string, n)
	for i := range paths {
		var err error
		if paths[i], err = s.file(size, i); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// writeRandom writes size pseudo-random bytes in 8 MiB chunks, so a 4 GiB
// source never sits in memory. Random bytes keep every stage honest: nothing
// on the path compresses them, and no block of the file is sparse.
func writeRandom(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var key [32]byte
	copy(key[:], "vodpipe bench")
	binary.LittleEndian.PutUint64(key[24:], seed)
	r := rand.NewChaCha8(key)
	buf := make([]byte, min(size, 8<<20))
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		_, _ = r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}
