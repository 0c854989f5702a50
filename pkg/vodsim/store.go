package vodsim

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vodpipe/vodpipe/internal/checksum"
)

// Object is a stored COS object. Bytes live in its pieces' files (a multipart
// object keeps its parts as they were written, so completing never copies), or
// nowhere in discard mode.
type Object struct {
	Bucket       string    `json:"bucket"`
	Key          string    `json:"key"`
	Size         int64     `json:"size"`
	ETag         string    `json:"etag"`
	CRC64        uint64    `json:"crc64"`
	ContentType  string    `json:"contentType,omitempty"`
	LastModified time.Time `json:"lastModified"`
	pieces       []piece
}

// piece is one stored run of bytes: a part file or a whole-object file.
type piece struct {
	path string
	size int64
}

// Upload is an open multipart upload.
type Upload struct {
	ID        string    `json:"uploadId"`
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	Initiated time.Time `json:"initiated"`
	parts     map[int]*Part
}

// Part is one written part of a multipart upload.
type Part struct {
	Number       int       `json:"partNumber"`
	Size         int64     `json:"size"`
	ETag         string    `json:"etag"`
	CRC64        uint64    `json:"crc64"`
	LastModified time.Time `json:"lastModified"`
	md5          []byte
	path         string
}

// blobStore writes bodies to disk while hashing them, or only hashes them in discard mode.
type blobStore struct {
	dir     string
	discard bool
	bufs    sync.Pool
}

func newBlobStore(dir string, discard bool) (*blobStore, error) {
	if !discard {
		if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o755); err != nil {
			return nil, fmt.Errorf("vodsim: data dir: %w", err)
		}
	}
	return &blobStore{dir: dir, discard: discard, bufs: sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}}, nil
}

// written is what writing one body produced.
type written struct {
	path  string
	size  int64
	md5   []byte
	crc64 uint64
}

// errBodyShort is returned when the body ended before its Content-Length.
var errBodyShort = errors.New("vodsim: body shorter than Content-Length")

// write streams r (exactly want bytes; want < 0 means until EOF) into a new blob.
func (s *blobStore) write(r io.Reader, want int64, name string) (written, error) {
	md := md5.New()
	crc := checksum.NewCRC64()
	var w io.Writer
	var f *os.File
	if s.discard {
		w = hashWriter{md, crc}
	} else {
		var err error
		f, err = os.CreateTemp(filepath.Join(s.dir, "blobs"), name+"-*")
		if err != nil {
			return written{}, err
		}
		w = io.MultiWriter(f, hashWriter{md, crc})
	}
	bp := s.bufs.Get().(*[]byte)
	src := r
	if want >= 0 {
		src = io.LimitReader(r, want)
	}
	n, err := io.CopyBuffer(w, src, *bp)
	s.bufs.Put(bp)
	if err == nil && want >= 0 && n != want {
		err = errBodyShort
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}
	if err != nil {
		return written{}, err
	}
	out := written{size: n, md5: md.Sum(nil), crc64: crc.Sum64()}
	if f != nil {
		out.path = f.Name()
	}
	return out, nil
}

func (s *blobStore) remove(path string) {
	if path != "" {
		_ = os.Remove(path)
	}
}

// open returns a reader over an object's bytes, or an error in discard mode.
func (s *blobStore) open(o *Object) (io.ReadCloser, error) {
	if s.discard {
		return nil, errors.New("vodsim: discard mode keeps no object bytes")
	}
	files := make([]*os.File, 0, len(o.pieces))
	readers := make([]io.Reader, 0, len(o.pieces))
	for _, p := range o.pieces {
		f, err := os.Open(p.path)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, f)
		readers = append(readers, io.LimitReader(f, p.size))
	}
	return &multiFile{Reader: io.MultiReader(readers...), files: files}, nil
}

type multiFile struct {
	io.Reader
	files []*os.File
}

func (m *multiFile) Close() error {
	for _, f := range m.files {
		f.Close()
	}
	return nil
}

// hashWriter feeds MD5 and CRC-64 in one Write, cheaper than a MultiWriter of two.
type hashWriter struct {
	md  hash.Hash
	crc hash.Hash64
}

func (h hashWriter) Write(p []byte) (int, error) {
	h.md.Write(p)
	h.crc.Write(p)
	return len(p), nil
}

func quotedETag(sum []byte) string { return `"` + hex.EncodeToString(sum) + `"` }

// multipartETag is S3/COS's ETag of a completed multipart object: MD5 of the parts' MD5s, dash, count.
func multipartETag(parts []*Part) string {
	h := md5.New()
	for _, p := range parts {
		h.Write(p.md5)
	}
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(h.Sum(nil)), len(parts))
}

var errNoSuchObject = errors.New("vodsim: no such object")
