package vodsim

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vodpipe/vodpipe/internal/checksum"
)

// COS limits, as documented for the XML API.
const (
	minPartSize    = 1 << 20
	maxPartSize    = 5 << 30
	maxPartNumber  = 10000
	maxPutSize     = 5 << 30
	maxCompleteXML = 2 << 20
)

// cosError is an XML error answer.
type cosError struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource"`
	RequestID string   `xml:"RequestId"`
	TraceID   string   `xml:"TraceId"`
	status    int
}

func (e *cosError) Error() string { return e.Code + ": " + e.Message }

func cosErr(status int, code, format string, args ...any) *cosError {
	return &cosError{status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// cosRequest is one authenticated COS request.
type cosRequest struct {
	op     string
	bucket string
	region string
	key    string
	cred   *credential
}

func (s *Server) serveCOS(w http.ResponseWriter, r *http.Request, bucket, region string) {
	reqID := randomToken(24)
	w.Header().Set("x-cos-request-id", reqID)
	w.Header().Set("Server", "tencent-cos")
	key := strings.TrimPrefix(r.URL.Path, "/")
	q := r.URL.Query()
	op := cosOperation(r.Method, key, q)
	cr := &cosRequest{op: op, bucket: bucket, region: region, key: key}
	fail := func(e *cosError) {
		e.RequestID, e.Resource = reqID, r.URL.Path
		s.writeCOSError(w, r, op, e)
	}
	if op == "" {
		fail(cosErr(http.StatusMethodNotAllowed, "MethodNotAllowed", "%s %s is not supported by vodsim", r.Method, r.URL.RequestURI()))
		return
	}
	d, ok := s.injectFaults(w, r, op, false)
	if !ok {
		return
	}
	if d.fail {
		s.injected(cr, "error")
		status, code := d.status, d.code
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		if code == "" {
			code = map[bool]string{true: "SlowDown", false: "InternalError"}[status == http.StatusServiceUnavailable]
		}
		fail(cosErr(status, code, "injected failure"))
		return
	}
	if e := s.authorizeCOS(r, cr); e != nil {
		fail(e)
		return
	}
	if d.reset {
		s.injected(cr, "reset")
		// Read part of the body, then drop the connection, as a network failure would.
		if r.ContentLength > 0 {
			_, _ = io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		}
		resetConn(w)
		return
	}
	if d.corrupt && (op == OpPutObject || op == OpUploadPart) && r.ContentLength > 0 {
		s.injected(cr, "corrupt")
		r.Body = corrupt(r.Body, r.ContentLength)
	}
	out := w // where the answer goes: nowhere when it is to be lost
	if d.lost {
		out = &lostAnswer{}
	}
	err := s.cosOp(out, r, cr)
	if err != nil {
		fail(err)
		return
	}
	if d.lost {
		// Done in full; the client sees its connection reset instead of the answer.
		s.injected(cr, "lost_answer")
		resetConn(w)
		return
	}
	s.metrics.requests.WithLabelValues(op, "200").Inc()
}

// cosOp carries out one COS operation, writing its answer to w.
func (s *Server) cosOp(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	var err *cosError
	switch cr.op {
	case OpPutObject:
		err = s.putObject(w, r, cr)
	case OpInitiateMultipart:
		err = s.initiateMultipart(w, r, cr)
	case OpUploadPart:
		err = s.uploadPart(w, r, cr)
	case OpListParts:
		err = s.listParts(w, r, cr)
	case OpCompleteMultipart:
		err = s.completeMultipart(w, r, cr)
	case OpAbortMultipart:
		err = s.abortMultipart(w, r, cr)
	case OpHeadObject, OpGetObject:
		err = s.getObject(w, r, cr)
	case OpDeleteObject:
		err = s.deleteObject(w, cr)
	case OpListUploads:
		err = s.listUploads(w, r, cr)
	}
	return err
}

// cosOperation maps method and query to the XML API operation ("" = unsupported).
func cosOperation(method, key string, q map[string][]string) string {
	_, hasUploadID := q["uploadId"]
	_, hasUploads := q["uploads"]
	_, hasPart := q["partNumber"]
	if key == "" {
		if method == http.MethodGet && hasUploads {
			return OpListUploads
		}
		return ""
	}
	switch method {
	case http.MethodPut:
		if hasUploadID || hasPart {
			return OpUploadPart
		}
		return OpPutObject
	case http.MethodPost:
		if hasUploads {
			return OpInitiateMultipart
		}
		if hasUploadID {
			return OpCompleteMultipart
		}
	case http.MethodGet:
		if hasUploadID {
			return OpListParts
		}
		return OpGetObject
	case http.MethodHead:
		return OpHeadObject
	case http.MethodDelete:
		if hasUploadID {
			return OpAbortMultipart
		}
		return OpDeleteObject
	}
	return ""
}

// authorizeCOS checks the bucket, the request signature, the temporary
// credential and its security token, and that the credential grants the key.
func (s *Server) authorizeCOS(r *http.Request, cr *cosRequest) *cosError {
	s.mu.Lock()
	region, ok := s.buckets[cr.bucket]
	s.mu.Unlock()
	if !ok || region != cr.region {
		return cosErr(http.StatusNotFound, "NoSuchBucket", "the bucket %s does not exist in %s", cr.bucket, cr.region)
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return cosErr(http.StatusForbidden, "AccessDenied", "Access Denied: no Authorization")
	}
	auth, err := ParseCOSAuthorization(h)
	if err != nil {
		return cosErr(http.StatusForbidden, "AccessDenied", "Authorization malformed: %v", err)
	}
	s.mu.Lock()
	cred := s.creds[auth.AccessKey]
	s.mu.Unlock()
	if cred == nil {
		return cosErr(http.StatusForbidden, "InvalidAccessKeyId", "the access key id you provided does not exist")
	}
	now := s.now()
	if err := VerifyCOSRequest(r, auth, cred.Key, now); err != nil {
		switch {
		case errors.Is(err, ErrCOSSignatureMismatch):
			return cosErr(http.StatusForbidden, "SignatureDoesNotMatch", "the calculated signature does not match the one provided")
		case errors.Is(err, ErrCOSTimeTooSkewed):
			return cosErr(http.StatusForbidden, "RequestTimeTooSkewed", "the difference between the request time and the server's time is too large")
		case errors.Is(err, ErrCOSRequestExpired):
			return cosErr(http.StatusForbidden, "AccessDenied", "Request has expired")
		default:
			return cosErr(http.StatusForbidden, "AccessDenied", "Authorization malformed: %v", err)
		}
	}
	token := r.Header.Get("x-cos-security-token")
	if token == "" {
		return cosErr(http.StatusForbidden, "AccessDenied", "x-cos-security-token is required with temporary credentials")
	}
	if token != cred.Token {
		return cosErr(http.StatusForbidden, "InvalidAccessKeyId", "the security token does not belong to this access key")
	}
	if !now.Before(cred.Expires) {
		return cosErr(http.StatusBadRequest, "ExpiredToken", "the provided token has expired")
	}
	if cred.Bucket != cr.bucket {
		return cosErr(http.StatusForbidden, "AccessDenied", "Access Denied: credential not valid for this bucket")
	}
	if cr.op == OpListUploads {
		// The web SDK lists the uploads of its own key first: grant a prefix that is one of ours.
		if !cred.grants(r.URL.Query().Get("prefix")) {
			return cosErr(http.StatusForbidden, "AccessDenied", "Access Denied: prefix outside the granted keys")
		}
	} else if !cred.grants(cr.key) {
		return cosErr(http.StatusForbidden, "AccessDenied", "Access Denied: key outside the granted keys")
	}
	cr.cred = cred
	return nil
}

func (s *Server) writeCOSError(w http.ResponseWriter, r *http.Request, op string, e *cosError) {
	s.metrics.requests.WithLabelValues(op, e.Code).Inc()
	if e.status >= 500 || e.status == http.StatusForbidden {
		s.log.Info("cos refused", "op", op, "code", e.Code, "status", e.status, "message", e.Message)
	}
	if r.Body != nil && r.ContentLength > 0 && r.ContentLength < 1<<20 {
		// Drain a small body so the client's connection can be reused.
		_, _ = io.Copy(io.Discard, r.Body)
	} else {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(e.status)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(e)
}

// readBody streams the request body into the blob store, checking
// Content-Length and Content-MD5.
func (s *Server) readBody(r *http.Request, cr *cosRequest, limit int64, name string) (written, *cosError) {
	if r.ContentLength < 0 {
		return written{}, cosErr(http.StatusLengthRequired, "MissingContentLength", "Content-Length is required")
	}
	if r.ContentLength > limit {
		return written{}, cosErr(http.StatusBadRequest, "EntityTooLarge", "body of %d bytes exceeds %d", r.ContentLength, limit)
	}
	if s.faults.storageFull() {
		return written{}, errStorageFull()
	}
	body := &countingReader{r: s.faults.throttle(r.Context(), r.Body), n: &s.received}
	wr, err := s.blobs.write(body, r.ContentLength, name)
	s.mu.Lock()
	s.traffic(cr).Received += body.local
	s.mu.Unlock()
	if err != nil {
		if errors.Is(err, errBodyShort) {
			return written{}, cosErr(http.StatusBadRequest, "IncompleteBody", "the body is shorter than Content-Length")
		}
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return written{}, errStorageFull()
		}
		return written{}, cosErr(http.StatusBadRequest, "RequestTimeout", "reading the body failed: %v", err)
	}
	s.metrics.bytesIn.Add(float64(wr.size))
	if v := r.Header.Get("Content-MD5"); v != "" {
		want, err := base64.StdEncoding.DecodeString(v)
		if err != nil || string(want) != string(wr.md5) {
			s.blobs.remove(wr.path)
			return written{}, cosErr(http.StatusBadRequest, "BadDigest", "the Content-MD5 you specified did not match what was received")
		}
	}
	return wr, nil
}

// errStorageFull is the answer of a store out of space. COS documents no
// such error (its storage does not fill up); vodsim answers what an
// S3-compatible store whose disks are full does (MinIO: 507
// XMinioStorageFull), under a plain code.
func errStorageFull() *cosError {
	return cosErr(http.StatusInsufficientStorage, "InsufficientStorage", "the storage is full: no space left to store the body")
}

func setChecksumHeaders(w http.ResponseWriter, etag string, crc uint64) {
	w.Header().Set("ETag", etag)
	w.Header().Set("x-cos-hash-crc64ecma", strconv.FormatUint(crc, 10))
}

func (s *Server) putObject(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	wr, e := s.readBody(r, cr, maxPutSize, "object")
	if e != nil {
		return e
	}
	o := &Object{Bucket: cr.bucket, Key: cr.key, Size: wr.size, ETag: quotedETag(wr.md5), CRC64: wr.crc64,
		ContentType: r.Header.Get("Content-Type"), LastModified: s.now(), pieces: []piece{{wr.path, wr.size}}}
	s.mu.Lock()
	old := s.objects[cr.bucket+"/"+cr.key]
	s.objects[cr.bucket+"/"+cr.key] = o
	s.mu.Unlock()
	if old != nil {
		s.removePieces(old.pieces)
	}
	setChecksumHeaders(w, o.ETag, o.CRC64)
	w.WriteHeader(http.StatusOK)
	return nil
}

type initiateResult struct {
	XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	UploadID string   `xml:"UploadId"`
}

func (s *Server) initiateMultipart(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	u := &Upload{ID: randomHex(8) + strconv.FormatInt(time.Now().UnixNano(), 36), Bucket: cr.bucket, Key: cr.key,
		Initiated: s.now(), parts: map[int]*Part{}}
	s.mu.Lock()
	s.uploads[u.ID] = u
	s.mu.Unlock()
	return writeXML(w, initiateResult{Bucket: cr.bucket, Key: cr.key, UploadID: u.ID})
}

// lookupUpload finds an open upload of this bucket and key.
func (s *Server) lookupUploadLocked(cr *cosRequest, id string) (*Upload, *cosError) {
	u := s.uploads[id]
	if u == nil || u.Bucket != cr.bucket || u.Key != cr.key {
		return nil, cosErr(http.StatusNotFound, "NoSuchUpload", "the specified multipart upload does not exist")
	}
	return u, nil
}

func (s *Server) uploadPart(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("partNumber"))
	if err != nil || n < 1 || n > maxPartNumber {
		return cosErr(http.StatusBadRequest, "InvalidArgument", "partNumber must be an integer from 1 to %d", maxPartNumber)
	}
	id := q.Get("uploadId")
	s.mu.Lock()
	_, e := s.lookupUploadLocked(cr, id)
	s.mu.Unlock()
	if e != nil {
		return e
	}
	wr, e := s.readBody(r, cr, maxPartSize, "part")
	if e != nil {
		return e
	}
	p := &Part{Number: n, Size: wr.size, ETag: quotedETag(wr.md5), CRC64: wr.crc64, LastModified: s.now(), md5: wr.md5, path: wr.path}
	s.mu.Lock()
	u, e := s.lookupUploadLocked(cr, id) // it may have been aborted or completed meanwhile
	var old *Part
	if e == nil {
		old = u.parts[n]
		u.parts[n] = p
		tr := s.traffic(cr)
		if tr.PartStores == nil {
			tr.PartStores = map[int]int{}
		}
		tr.PartStores[n]++
	}
	s.mu.Unlock()
	if e != nil {
		s.blobs.remove(wr.path)
		return e
	}
	if old != nil {
		s.blobs.remove(old.path)
	}
	setChecksumHeaders(w, p.ETag, p.CRC64)
	w.WriteHeader(http.StatusOK)
	return nil
}

type listPartsResult struct {
	XMLName              xml.Name   `xml:"ListPartsResult"`
	Bucket               string     `xml:"Bucket"`
	EncodingType         string     `xml:"Encoding-type,omitempty"`
	Key                  string     `xml:"Key"`
	UploadID             string     `xml:"UploadId"`
	StorageClass         string     `xml:"StorageClass"`
	PartNumberMarker     int        `xml:"PartNumberMarker"`
	NextPartNumberMarker int        `xml:"NextPartNumberMarker"`
	MaxParts             int        `xml:"MaxParts"`
	IsTruncated          bool       `xml:"IsTruncated"`
	Parts                []partInfo `xml:"Part"`
}

type partInfo struct {
	PartNumber   int    `xml:"PartNumber"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
}

func (s *Server) listParts(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	q := r.URL.Query()
	maxParts, marker := 1000, 0
	if v := q.Get("max-parts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return cosErr(http.StatusBadRequest, "InvalidArgument", "max-parts must be a positive integer")
		}
		maxParts = min(n, 1000)
	}
	if v := q.Get("part-number-marker"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return cosErr(http.StatusBadRequest, "InvalidArgument", "part-number-marker must be a non-negative integer")
		}
		marker = n
	}
	s.mu.Lock()
	u, e := s.lookupUploadLocked(cr, q.Get("uploadId"))
	if e != nil {
		s.mu.Unlock()
		return e
	}
	numbers := make([]int, 0, len(u.parts))
	for n := range u.parts {
		if n > marker {
			numbers = append(numbers, n)
		}
	}
	sort.Ints(numbers)
	res := listPartsResult{Bucket: cr.bucket, Key: cr.key, UploadID: u.ID, StorageClass: "STANDARD",
		PartNumberMarker: marker, MaxParts: maxParts, EncodingType: q.Get("encoding-type")}
	for i, n := range numbers {
		if i == maxParts {
			res.IsTruncated = true
			break
		}
		p := u.parts[n]
		res.Parts = append(res.Parts, partInfo{PartNumber: n, LastModified: p.LastModified.UTC().Format(time.RFC3339), ETag: p.ETag, Size: p.Size})
		res.NextPartNumberMarker = n
	}
	s.mu.Unlock()
	return writeXML(w, res)
}

type completeRequest struct {
	XMLName xml.Name `xml:"CompleteMultipartUpload"`
	Parts   []struct {
		PartNumber int    `xml:"PartNumber"`
		ETag       string `xml:"ETag"`
	} `xml:"Part"`
}

type completeResult struct {
	XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
	Location string   `xml:"Location"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	ETag     string   `xml:"ETag"`
}

func (s *Server) completeMultipart(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCompleteXML+1))
	if err != nil {
		return cosErr(http.StatusBadRequest, "RequestTimeout", "reading the body failed")
	}
	if len(body) > maxCompleteXML {
		return cosErr(http.StatusBadRequest, "EntityTooLarge", "CompleteMultipartUpload body too large")
	}
	if v := r.Header.Get("Content-MD5"); v != "" {
		sum := md5.Sum(body)
		if base64.StdEncoding.EncodeToString(sum[:]) != v {
			return cosErr(http.StatusBadRequest, "BadDigest", "the Content-MD5 you specified did not match what was received")
		}
	}
	var req completeRequest
	if err := xml.Unmarshal(body, &req); err != nil {
		return cosErr(http.StatusBadRequest, "MalformedXML", "the XML you provided was not well-formed")
	}
	if len(req.Parts) == 0 {
		return cosErr(http.StatusBadRequest, "MalformedXML", "CompleteMultipartUpload names no part")
	}
	id := r.URL.Query().Get("uploadId")
	s.mu.Lock()
	u, e := s.lookupUploadLocked(cr, id)
	if e != nil {
		s.mu.Unlock()
		return e
	}
	parts := make([]*Part, 0, len(req.Parts))
	for i, rp := range req.Parts {
		if i > 0 && rp.PartNumber <= req.Parts[i-1].PartNumber {
			s.mu.Unlock()
			return cosErr(http.StatusBadRequest, "InvalidPartOrder", "the list of parts was not in ascending order")
		}
		p := u.parts[rp.PartNumber]
		if p == nil || p.ETag != normalizeETag(rp.ETag) {
			s.mu.Unlock()
			return cosErr(http.StatusBadRequest, "InvalidPart", "part %d was not uploaded or its ETag does not match", rp.PartNumber)
		}
		parts = append(parts, p)
	}
	for i, p := range parts[:len(parts)-1] {
		if p.Size < minPartSize {
			s.mu.Unlock()
			return cosErr(http.StatusBadRequest, "EntityTooSmall", "part %d is %d bytes; every part but the last must be at least %d", req.Parts[i].PartNumber, p.Size, minPartSize)
		}
	}
	crcs := make([]checksum.PartCRC, len(parts))
	o := &Object{Bucket: cr.bucket, Key: cr.key, ETag: multipartETag(parts), LastModified: s.now()}
	used := map[int]bool{}
	for i, p := range parts {
		crcs[i] = checksum.PartCRC{Size: p.Size, CRC: p.CRC64}
		o.Size += p.Size
		o.pieces = append(o.pieces, piece{p.path, p.Size})
		used[p.Number] = true
	}
	o.CRC64 = checksum.CombineParts(crcs)
	var unused []piece
	for n, p := range u.parts {
		if !used[n] {
			unused = append(unused, piece{p.path, p.Size})
		}
	}
	old := s.objects[cr.bucket+"/"+cr.key]
	s.objects[cr.bucket+"/"+cr.key] = o
	delete(s.uploads, id)
	s.mu.Unlock()
	s.removePieces(unused)
	if old != nil {
		s.removePieces(old.pieces)
	}
	w.Header().Set("x-cos-hash-crc64ecma", strconv.FormatUint(o.CRC64, 10))
	return writeXML(w, completeResult{Location: r.Host + "/" + cr.key, Bucket: cr.bucket, Key: cr.key, ETag: o.ETag})
}

func normalizeETag(e string) string {
	e = strings.TrimSpace(e)
	if !strings.HasPrefix(e, `"`) {
		e = `"` + e + `"`
	}
	return e
}

func (s *Server) abortMultipart(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	s.mu.Lock()
	u, e := s.lookupUploadLocked(cr, r.URL.Query().Get("uploadId"))
	if e != nil {
		s.mu.Unlock()
		return e
	}
	delete(s.uploads, u.ID)
	var pieces []piece
	for _, p := range u.parts {
		pieces = append(pieces, piece{p.path, p.Size})
	}
	s.mu.Unlock()
	s.removePieces(pieces)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	s.mu.Lock()
	o := s.objects[cr.bucket+"/"+cr.key]
	s.mu.Unlock()
	if o == nil {
		return cosErr(http.StatusNotFound, "NoSuchKey", "the specified key does not exist")
	}
	h := w.Header()
	h.Set("ETag", o.ETag)
	h.Set("x-cos-hash-crc64ecma", strconv.FormatUint(o.CRC64, 10))
	h.Set("Last-Modified", o.LastModified.UTC().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.FormatInt(o.Size, 10))
	h.Set("Accept-Ranges", "bytes")
	if o.ContentType != "" {
		h.Set("Content-Type", o.ContentType)
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	rc, err := s.blobs.open(o)
	if err != nil {
		return cosErr(http.StatusNotImplemented, "NotImplemented", "%v", err)
	}
	defer rc.Close()
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, rc)
	return nil
}

func (s *Server) deleteObject(w http.ResponseWriter, cr *cosRequest) *cosError {
	s.mu.Lock()
	o := s.objects[cr.bucket+"/"+cr.key]
	delete(s.objects, cr.bucket+"/"+cr.key)
	s.mu.Unlock()
	if o != nil {
		s.removePieces(o.pieces)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type listUploadsResult struct {
	XMLName xml.Name     `xml:"ListMultipartUploadsResult"`
	Bucket  string       `xml:"Bucket"`
	Prefix  string       `xml:"Prefix"`
	Uploads []uploadInfo `xml:"Upload"`
}

type uploadInfo struct {
	Key       string `xml:"Key"`
	UploadID  string `xml:"UploadId"`
	Initiated string `xml:"Initiated"`
}

func (s *Server) listUploads(w http.ResponseWriter, r *http.Request, cr *cosRequest) *cosError {
	prefix := r.URL.Query().Get("prefix")
	res := listUploadsResult{Bucket: cr.bucket, Prefix: prefix}
	s.mu.Lock()
	for _, u := range s.uploads {
		if u.Bucket == cr.bucket && strings.HasPrefix(u.Key, prefix) {
			res.Uploads = append(res.Uploads, uploadInfo{Key: u.Key, UploadID: u.ID, Initiated: u.Initiated.UTC().Format(time.RFC3339)})
		}
	}
	s.mu.Unlock()
	sort.Slice(res.Uploads, func(i, j int) bool { return res.Uploads[i].Initiated < res.Uploads[j].Initiated })
	return writeXML(w, res)
}

func (s *Server) removePieces(ps []piece) {
	for _, p := range ps {
		s.blobs.remove(p.path)
	}
}

func writeXML(w http.ResponseWriter, v any) *cosError {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(v)
	return nil
}

// resetConn drops the client connection with a TCP reset, as a network fault would.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// countingReader counts bytes as they are read, so cut-off bodies count too.
type countingReader struct {
	r     io.Reader
	n     *atomic.Int64
	local int64 // what this reader read
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	c.local += int64(n)
	return n, err
}

// ObjectTraffic is what vodsim saw for one object key: body bytes read
// (bodies cut short included) and faults it injected into its requests.
type ObjectTraffic struct {
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Received int64  `json:"received"`
	Faults   int    `json:"faults"`
	// PartStores counts, per part number, the UploadPart bodies stored under
	// the key: a resumed upload that skips the parts it had stored leaves
	// those at 1.
	PartStores map[int]int `json:"partStores,omitempty"`
	// Media is the media name of the upload session the key belongs to.
	Media string `json:"media,omitempty"`
}

// traffic is the record of cr's object; s.mu held.
func (s *Server) traffic(cr *cosRequest) *ObjectTraffic {
	id := cr.bucket + "/" + cr.key
	t := s.trafficBy[id]
	if t == nil {
		t = &ObjectTraffic{Bucket: cr.bucket, Key: cr.key}
		s.trafficBy[id] = t
	}
	// Named by the first request with credentials (a fault may come before
	// them): the session goes after its lifetime, the record stays.
	if t.Media == "" && cr.cred != nil {
		if sess := s.sessions[cr.cred.SessionKey]; sess != nil {
			t.Media = sess.VideoName
		}
	}
	return t
}

// injected counts a fault injected into cr: in the metrics by operation
// and kind, and against its object.
func (s *Server) injected(cr *cosRequest, kind string) {
	s.metrics.faults.WithLabelValues(cr.op, kind).Inc()
	if cr.key == "" {
		return
	}
	s.mu.Lock()
	s.traffic(cr).Faults++
	s.mu.Unlock()
}
