package bench

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/vodpipe/vodpipe/internal/checksum"
)

// minimalCOS serves the three calls of cos-go-sdk-v5's multipart Upload
// (initiate, upload part, complete) doing only the per-byte work COS cannot
// avoid: MD5 for each part's ETag and CRC-64/ECMA for x-cos-hash-crc64ecma,
// which the SDK checks. It verifies no signature and keeps no bytes: it is
// the floor P2 holds vodsim against.
type minimalCOS struct {
	mu      sync.Mutex
	last    int
	uploads map[string]map[int]minimalPart // upload id → part number → part
}

type minimalPart struct {
	md5 [md5.Size]byte
	crc checksum.PartCRC
}

func newMinimalCOS() *minimalCOS { return &minimalCOS{uploads: map[string]map[int]minimalPart{}} }

func (m *minimalCOS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	key := strings.TrimPrefix(r.URL.Path, "/")
	var err error
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		m.initiate(w, key)
	case r.Method == http.MethodPut && q.Has("partNumber") && q.Has("uploadId"):
		err = m.part(w, r, q.Get("uploadId"), q.Get("partNumber"))
	case r.Method == http.MethodPost && q.Has("uploadId"):
		err = m.complete(w, r, key, q.Get("uploadId"))
	default:
		err = fmt.Errorf("%s %s is not a multipart upload call", r.Method, r.URL)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}

func (m *minimalCOS) initiate(w http.ResponseWriter, key string) {
	m.mu.Lock()
	m.last++
	id := fmt.Sprintf("minimal-%d", m.last)
	m.uploads[id] = map[int]minimalPart{}
	m.mu.Unlock()
	writeXML(w, "InitiateMultipartUploadResult", "<Key>%s</Key><UploadId>%s</UploadId>", xmlText(key), id)
}

func (m *minimalCOS) part(w http.ResponseWriter, r *http.Request, uploadID, number string) error {
	n, err := strconv.Atoi(number)
	if err != nil {
		return err
	}
	h, c := md5.New(), checksum.NewCRC64()
	size, err := io.Copy(io.MultiWriter(h, c), r.Body)
	if err != nil {
		return err
	}
	p := minimalPart{crc: checksum.PartCRC{Size: size, CRC: c.Sum64()}}
	h.Sum(p.md5[:0])
	m.mu.Lock()
	parts, ok := m.uploads[uploadID]
	if ok {
		parts[n] = p
	}
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("no upload %s", uploadID)
	}
	w.Header().Set("ETag", `"`+hex.EncodeToString(p.md5[:])+`"`)
	w.Header().Set("x-cos-hash-crc64ecma", strconv.FormatUint(p.crc.CRC, 10))
	return nil
}

func (m *minimalCOS) complete(w http.ResponseWriter, r *http.Request, key, uploadID string) error {
	var body struct {
		Parts []struct {
			PartNumber int `xml:"PartNumber"`
		} `xml:"Part"`
	}
	if err := xml.NewDecoder(r.Body).Decode(&body); err != nil {
		return err
	}
	m.mu.Lock()
	parts := m.uploads[uploadID]
	delete(m.uploads, uploadID)
	m.mu.Unlock()
	// The multipart ETag of S3 and COS: MD5 of the parts' MD5s, a dash, the part count.
	etag := md5.New()
	crcs := make([]checksum.PartCRC, len(body.Parts))
	for i, bp := range body.Parts {
		p, ok := parts[bp.PartNumber]
		if !ok {
			return fmt.Errorf("no part %d in upload %s", bp.PartNumber, uploadID)
		}
		etag.Write(p.md5[:])
		crcs[i] = p.crc
	}
	w.Header().Set("x-cos-hash-crc64ecma", strconv.FormatUint(checksum.CombineParts(crcs), 10))
	writeXML(w, "CompleteMultipartUploadResult", "<Key>%s</Key><ETag>&quot;%x-%d&quot;</ETag>", xmlText(key), etag.Sum(nil), len(crcs))
	return nil
}

// writeXML answers one XML element named root whose content is format with args.
func writeXML(w http.ResponseWriter, root, format string, args ...any) {
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprintf(w, "%s<%s>"+format+"</%s>", append(append([]any{xml.Header, root}, args...), root)...)
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
