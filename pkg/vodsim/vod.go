package vodsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"crypto/rand"

	"github.com/vodpipe/vodpipe/pkg/vod"
)

// maxVODBody bounds an ApplyUploadUGC / CommitUploadUGC body.
const maxVODBody = 64 << 10

// videoTypes and coverTypes are the media extensions VOD accepts from clients.
var (
	videoTypes = map[string]bool{"mp4": true, "mov": true, "flv": true, "avi": true, "mkv": true, "ts": true,
		"m3u8": true, "wmv": true, "webm": true, "3gp": true, "mpg": true, "mpeg": true, "m4v": true, "rmvb": true,
		"mp3": true, "m4a": true, "wav": true, "aac": true, "flac": true, "ogg": true}
	coverTypes = map[string]bool{"jpg": true, "jpeg": true, "png": true, "gif": true, "webp": true, "bmp": true}
)

// session is one upload session, opened by ApplyUploadUGC.
type session struct {
	Key            string
	SecretID       string
	Created        time.Time
	Region         string
	Bucket         string
	VideoKey       string
	VideoName      string
	VideoType      string
	VideoSize      int64
	CoverKey       string
	CoverType      string
	CoverSize      int64
	Procedure      string
	ClassID        int64
	SourceContext  string
	SessionContext string
	SubAppID       uint64
	// TargetFileID is set for a cover change of an existing file.
	TargetFileID string
	FileID       string
	Applies      int
}

// credential is a temporary COS credential.
type credential struct {
	ID      string
	Key     string
	Token   string
	Expires time.Time
	Bucket  string
	// VideoKey and CoverKey are the object keys it grants ("" none).
	VideoKey, CoverKey string
	SessionKey         string
}

// grants reports whether the credential may write key.
func (c *credential) grants(key string) bool {
	return key != "" && (key == c.VideoKey || key == c.CoverKey)
}

// File is a committed media file.
type File struct {
	FileID          string    `json:"fileId"`
	SessionKey      string    `json:"-"`
	Name            string    `json:"name"`
	Type            string    `json:"type"`
	Bucket          string    `json:"bucket"`
	VideoKey        string    `json:"videoKey"`
	CoverKey        string    `json:"coverKey,omitempty"`
	Size            int64     `json:"size"`
	MediaURL        string    `json:"mediaUrl"`
	CoverURL        string    `json:"coverUrl,omitempty"`
	StorageRegion   string    `json:"storageRegion"`
	ClassID         int64     `json:"classId"`
	SourceContext   string    `json:"sourceContext,omitempty"`
	Procedure       string    `json:"procedure,omitempty"`
	ProcedureTaskID string    `json:"procedureTaskId,omitempty"`
	Created         time.Time `json:"created"`
	Commits         int       `json:"commits"`
}

// SignatureUse counts the uses of one signature.
type SignatureUse struct {
	// Hash is a SHA-256 of the signature, so the admin API never shows a usable signature.
	Hash       string    `json:"hash"`
	SecretID   string    `json:"secretId"`
	OneTime    bool      `json:"oneTime"`
	Uses       int       `json:"uses"`
	Refused    int       `json:"refused"`
	ExpireTime time.Time `json:"expireTime"`
	// Actions are the first maxSignatureActions calls it served (Uses counts them all).
	Actions []string `json:"actions"`
}

// maxSignatureActions bounds a signature's recorded actions: a signature
// that is not one-time may serve any number of uploads (a worker shares
// one among its jobs of one policy).
const maxSignatureActions = 100

// applyRequest is the ApplyUploadUGC body, as the web SDK and vodpipe send it.
type applyRequest struct {
	Signature     string `json:"signature"`
	VideoName     string `json:"videoName"`
	VideoType     string `json:"videoType"`
	VideoSize     *int64 `json:"videoSize"`
	CoverName     string `json:"coverName"`
	CoverType     string `json:"coverType"`
	CoverSize     *int64 `json:"coverSize"`
	VodSessionKey string `json:"vodSessionKey"`
	FileID        string `json:"fileId"`
	StorageRegion string `json:"storageRegion"`
	UploadFromWeb bool   `json:"uploadFromWeb"`
	ExpireTime    string `json:"ExpireTime"`
}

type commitRequest struct {
	Signature     string `json:"signature"`
	VodSessionKey string `json:"vodSessionKey"`
}

// vodAnswer is the envelope of every client-upload answer (always HTTP 200).
type vodAnswer struct {
	Code      vod.Code `json:"code"`
	Message   string   `json:"message"`
	RequestID string   `json:"requestId"`
	Data      any      `json:"data,omitempty"`
}

// vodError is a refusal with its code.
type vodError struct {
	code vod.Code
	msg  string
}

func (e *vodError) Error() string { return e.msg }

func refuse(code vod.Code, format string, args ...any) *vodError {
	return &vodError{code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) serveVOD(w http.ResponseWriter, r *http.Request) {
	action := r.URL.Query().Get("Action")
	op := action
	switch action {
	case vod.ActionApply, vod.ActionCommit, vod.ActionPrepare:
	default:
		s.writeVOD(w, op, nil, refuse(vod.CodeInvalidParameter, "unknown Action %q", action))
		return
	}
	d, ok := s.injectFaults(w, r, op, true)
	if !ok {
		return
	}
	if d.fail {
		s.metrics.faults.WithLabelValues(op, "error").Inc()
		code := vod.CodeInternal
		if d.code != "" {
			if n, err := strconv.Atoi(d.code); err == nil {
				code = vod.Code(n)
			}
		}
		if d.status >= 500 && d.status != 0 {
			// An HTTP-level failure, as a broken gateway would answer.
			s.metrics.requests.WithLabelValues(op, strconv.Itoa(d.status)).Inc()
			http.Error(w, "injected failure", d.status)
			return
		}
		s.writeVOD(w, op, nil, refuse(code, "injected failure"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxVODBody+1))
	if err != nil {
		return
	}
	if len(body) > maxVODBody {
		s.writeVOD(w, op, nil, refuse(vod.CodeInvalidParameter, "body larger than %d bytes", maxVODBody))
		return
	}
	var data any
	var verr *vodError
	switch action {
	case vod.ActionApply:
		var req applyRequest
		if verr = decodeJSON(body, &req); verr == nil {
			data, verr = s.apply(req)
		}
	case vod.ActionCommit:
		var req commitRequest
		if verr = decodeJSON(body, &req); verr == nil {
			data, verr = s.commit(req)
		}
	case vod.ActionPrepare:
		var req struct {
			Signature string `json:"signature"`
		}
		if verr = decodeJSON(body, &req); verr == nil {
			data, verr = s.prepare(req.Signature)
		}
	}
	if d.answer > 0 {
		select {
		case <-time.After(d.answer):
		case <-r.Context().Done():
			return // the client left; what was done stays done
		}
	}
	if d.lost && verr == nil {
		// Done; the client sees its connection reset instead of the answer.
		s.metrics.faults.WithLabelValues(op, "lost_answer").Inc()
		resetConn(w)
		return
	}
	s.writeVOD(w, op, data, verr)
}

func decodeJSON(body []byte, v any) *vodError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return refuse(vod.CodeInvalidParameter, "body is not valid JSON for this action: %v", err)
	}
	return nil
}

func (s *Server) writeVOD(w http.ResponseWriter, op string, data any, verr *vodError) {
	a := vodAnswer{RequestID: randomHex(16), Data: data}
	if verr != nil {
		a.Code, a.Message, a.Data = verr.code, verr.msg, nil
	}
	s.metrics.requests.WithLabelValues(op, strconv.Itoa(int(a.Code))).Inc()
	if verr != nil {
		s.log.Info("vod refused", "op", op, "code", int(a.Code), "reason", a.Message)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(a)
}

// useSignature verifies sig and records its use; a one-time signature is
// refused from its second use on, whatever the action.
func (s *Server) useSignature(sig, action string) (*vod.Signature, *vodError) {
	if sig == "" {
		return nil, refuse(vod.CodeInvalidParameter, "signature is required")
	}
	parsed, err := s.verifier.Verify(sig)
	if err != nil {
		return nil, refuse(vod.CodeFor(err), "%v", oneLine(err))
	}
	// Keyed by the signature's bytes, not its text: base64 may spell the
	// same bytes more than one way (unused padding bits), and a one-time
	// signature is one use whatever its spelling.
	sum := sha256.Sum256([]byte(parsed.Original))
	h := hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gcSignaturesLocked()
	u := s.sigUses[h]
	if u == nil {
		u = &SignatureUse{Hash: h, SecretID: parsed.Params.SecretID, OneTime: parsed.Params.OneTimeValid,
			ExpireTime: time.Unix(parsed.Params.ExpireTime, 0)}
		s.sigUses[h] = u
	}
	if u.OneTime && u.Uses > 0 {
		u.Refused++
		return nil, refuse(vod.CodeSignatureUsed, "one-time signature already used")
	}
	u.Uses++
	if len(u.Actions) < maxSignatureActions {
		u.Actions = append(u.Actions, action)
	}
	return parsed, nil
}

// gcSignaturesLocked forgets expired signatures: they are refused as
// expired anyway. It scans when the record has doubled since the last
// scan left it (10,000 at least), so a call costs O(1) amortised however
// many signatures are still valid (it scanned them all on every call once
// 10,000 were).
func (s *Server) gcSignaturesLocked() {
	if len(s.sigUses) < max(10000, 2*s.sigUsesKept) {
		return
	}
	now := s.now()
	for h, u := range s.sigUses {
		if u.ExpireTime.Before(now) {
			delete(s.sigUses, h)
		}
	}
	s.sigUsesKept = len(s.sigUses)
}

func (s *Server) apply(req applyRequest) (any, *vodError) {
	sig, verr := s.useSignature(req.Signature, vod.ActionApply)
	if verr != nil {
		return nil, verr
	}
	p := sig.Params
	if p.Procedure != "" && !s.knownProcedure(p.Procedure) {
		return nil, refuse(vod.CodeProcedureNotFound, "task flow %q does not exist", p.Procedure)
	}
	if p.StorageRegion != "" && !s.knownRegion(p.StorageRegion) {
		return nil, refuse(vod.CodeRegionNotAllowed, "storage region %q is not enabled for this app", p.StorageRegion)
	}
	if p.VodSubAppID != 0 && !slices.Contains(s.cfg.SubApps, p.VodSubAppID) {
		return nil, refuse(vod.CodeInvalidParameter, "vodSubAppId %d is not a sub-application of this app", p.VodSubAppID)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()

	var sess *session
	switch {
	case req.VodSessionKey != "":
		sess = s.sessions[req.VodSessionKey]
		if sess == nil || now.Sub(sess.Created) > s.cfg.SessionLifetime {
			delete(s.sessions, req.VodSessionKey)
			return nil, refuse(vod.CodeSessionExpired, "vodSessionKey unknown or expired")
		}
		if sess.SecretID != p.SecretID || sess.SubAppID != p.VodSubAppID {
			return nil, refuse(vod.CodeSessionExpired, "vodSessionKey belongs to another app")
		}
	case req.FileID != "":
		f := s.files[req.FileID]
		if f == nil {
			return nil, refuse(vod.CodeFileNotFound, "fileId %q not found", req.FileID)
		}
		if req.CoverType == "" || req.CoverSize == nil {
			return nil, refuse(vod.CodeInvalidParameter, "coverName, coverType and coverSize are required to change a cover")
		}
		sess = s.newSessionLocked(p, now, f.StorageRegion)
		sess.TargetFileID = f.FileID
		if verr := s.setCoverLocked(sess, req); verr != nil {
			return nil, verr
		}
	default:
		if verr := validateMedia(req); verr != nil {
			return nil, verr
		}
		region := p.StorageRegion
		if region == "" && req.StorageRegion != "" {
			if !s.knownRegion(req.StorageRegion) {
				return nil, refuse(vod.CodeRegionNotAllowed, "storage region %q is not enabled for this app", req.StorageRegion)
			}
			region = req.StorageRegion
		}
		if region == "" {
			region = s.cfg.Regions[0]
		}
		sess = s.newSessionLocked(p, now, region)
		sess.VideoName, sess.VideoType, sess.VideoSize = req.VideoName, req.VideoType, *req.VideoSize
		sess.VideoKey = fmt.Sprintf("%d/%s/%s.%s", s.cfg.AppID, randomHex(12), randomAlnum(12), req.VideoType)
		if req.CoverType != "" || req.CoverSize != nil || req.CoverName != "" {
			if verr := s.setCoverLocked(sess, req); verr != nil {
				return nil, verr
			}
		}
	}
	sess.Applies++
	s.sessions[sess.Key] = sess
	cred := s.issueCredentialLocked(sess, now)
	return s.applyAnswer(sess, cred, now), nil
}

func validateMedia(req applyRequest) *vodError {
	switch {
	case req.VideoName == "":
		return refuse(vod.CodeInvalidParameter, "videoName is required")
	case strings.ContainsAny(req.VideoName, `\/:*?"<>|`):
		return refuse(vod.CodeInvalidParameter, `videoName may not contain \ / : * ? " < > |`)
	case len([]rune(req.VideoName)) > 64:
		return refuse(vod.CodeInvalidParameter, "videoName longer than 64 characters")
	case !videoTypes[req.VideoType]:
		return refuse(vod.CodeInvalidParameter, "videoType %q is not a supported lower-case media extension", req.VideoType)
	case req.VideoSize == nil:
		return refuse(vod.CodeInvalidParameter, "videoSize is required")
	case *req.VideoSize < 0:
		return refuse(vod.CodeInvalidParameter, "videoSize must not be negative")
	}
	return nil
}

func (s *Server) setCoverLocked(sess *session, req applyRequest) *vodError {
	switch {
	case !coverTypes[req.CoverType]:
		return refuse(vod.CodeInvalidParameter, "coverType %q is not a supported lower-case image extension", req.CoverType)
	case req.CoverSize == nil || *req.CoverSize <= 0:
		return refuse(vod.CodeInvalidParameter, "coverSize must be positive")
	case strings.ContainsAny(req.CoverName, `\/:*?"<>|`):
		return refuse(vod.CodeInvalidParameter, `coverName may not contain \ / : * ? " < > |`)
	}
	sess.CoverType, sess.CoverSize = req.CoverType, *req.CoverSize
	sess.CoverKey = fmt.Sprintf("%d/%s/%s.%s", s.cfg.AppID, randomHex(12), randomAlnum(12), req.CoverType)
	return nil
}

func (s *Server) newSessionLocked(p vod.SignatureParams, now time.Time, region string) *session {
	s.sweepSessionsLocked(now)
	sess := &session{
		Key: randomToken(48), SecretID: p.SecretID, Created: now, Region: region, Bucket: s.bucketFor(region),
		Procedure: p.Procedure, ClassID: p.ClassID, SourceContext: p.SourceContext,
		SessionContext: p.SessionContext, SubAppID: p.VodSubAppID,
	}
	s.sessionOrder = append(s.sessionOrder, sess.Key)
	return sess
}

// sweepSessionsLocked forgets the sessions older than SessionLifetime, as
// VOD does (a later call with one is refused as expired either way): the
// oldest first, so that each call costs the sessions it forgets.
func (s *Server) sweepSessionsLocked(now time.Time) {
	for s.sessionHead < len(s.sessionOrder) {
		key := s.sessionOrder[s.sessionHead]
		if sess := s.sessions[key]; sess != nil {
			if now.Sub(sess.Created) <= s.cfg.SessionLifetime {
				break
			}
			delete(s.sessions, key)
		}
		s.sessionOrder[s.sessionHead] = ""
		s.sessionHead++
	}
	s.sessionOrder, s.sessionHead = compactFront(s.sessionOrder, s.sessionHead)
}

// compactFront drops the first head elements of q once they are half of
// it, so that a queue consumed from the front keeps no more than twice
// what it holds.
func compactFront[T any](q []T, head int) ([]T, int) {
	if head < 1024 || head*2 < len(q) {
		return q, head
	}
	n := copy(q, q[head:])
	clear(q[n:])
	return q[:n], 0
}

func (s *Server) issueCredentialLocked(sess *session, now time.Time) *credential {
	c := &credential{
		ID: "AKID" + randomAlnum(32), Key: randomAlnum(32), Token: randomToken(96),
		Expires: now.Add(s.faults.credentialLifetime(s.cfg.CredentialLifetime)).Truncate(time.Second),
		Bucket:  sess.Bucket, VideoKey: sess.VideoKey, CoverKey: sess.CoverKey, SessionKey: sess.Key,
	}
	// Expired credentials are refused as expired for a while, then forgotten:
	// swept once a minute, not on every issue (that would cost a pass over
	// every credential per ApplyUploadUGC).
	if now.Sub(s.credsSwept) > time.Minute {
		s.credsSwept = now
		for id, old := range s.creds {
			if now.Sub(old.Expires) > time.Hour {
				delete(s.creds, id)
			}
		}
	}
	s.creds[c.ID] = c
	return c
}

// applyAnswerData is the data of a successful ApplyUploadUGC.
type applyAnswerData struct {
	Video           *storageObject `json:"video,omitempty"`
	Cover           *storageObject `json:"cover,omitempty"`
	StorageAppID    int64          `json:"storageAppId"`
	StorageBucket   string         `json:"storageBucket"`
	StorageRegion   string         `json:"storageRegion"`
	StorageRegionV5 string         `json:"storageRegionV5"`
	// StorageRegionV5Alt is the same value under the capitalised name the web SDK's S3 path reads.
	StorageRegionV5Alt string          `json:"StorageRegionV5"`
	Domain             string          `json:"domain"`
	VodSessionKey      string          `json:"vodSessionKey"`
	TempCertificate    tempCertificate `json:"tempCertificate"`
	AppID              int64           `json:"appId"`
	Timestamp          int64           `json:"timestamp"`
}

type storageObject struct {
	StorageSignature string `json:"storageSignature"`
	StoragePath      string `json:"storagePath"`
}

type tempCertificate struct {
	SecretID    string `json:"secretId"`
	SecretKey   string `json:"secretKey"`
	Token       string `json:"token"`
	ExpiredTime int64  `json:"expiredTime"`
}

func (s *Server) applyAnswer(sess *session, c *credential, now time.Time) applyAnswerData {
	d := applyAnswerData{
		StorageAppID: s.cfg.AppID, StorageBucket: s.storageBucket(sess.Region), StorageRegion: regionShort(sess.Region),
		StorageRegionV5: sess.Region, StorageRegionV5Alt: sess.Region, Domain: "vod2.qcloud.com",
		VodSessionKey: sess.Key, AppID: s.cfg.AppID, Timestamp: now.Unix(),
		TempCertificate: tempCertificate{SecretID: c.ID, SecretKey: c.Key, Token: c.Token, ExpiredTime: c.Expires.Unix()},
	}
	if sess.VideoKey != "" {
		d.Video = &storageObject{StorageSignature: randomToken(60), StoragePath: "/" + sess.VideoKey}
	}
	if sess.CoverKey != "" {
		d.Cover = &storageObject{StorageSignature: randomToken(60), StoragePath: "/" + sess.CoverKey}
	}
	return d
}

// commitAnswerData is the data of a successful CommitUploadUGC.
type commitAnswerData struct {
	Video  *mediaURL `json:"video,omitempty"`
	Cover  *mediaURL `json:"cover,omitempty"`
	FileID string    `json:"fileId"`
}

type mediaURL struct {
	URL           string `json:"url"`
	VerifyContent string `json:"verify_content"`
}

func (s *Server) commit(req commitRequest) (any, *vodError) {
	if req.VodSessionKey == "" {
		return nil, refuse(vod.CodeInvalidParameter, "vodSessionKey is required")
	}
	sig, verr := s.useSignature(req.Signature, vod.ActionCommit)
	if verr != nil {
		return nil, verr
	}
	now := s.now()
	s.mu.Lock()
	sess := s.sessions[req.VodSessionKey]
	if sess == nil || now.Sub(sess.Created) > s.cfg.SessionLifetime || sess.SecretID != sig.Params.SecretID || sess.SubAppID != sig.Params.VodSubAppID {
		s.mu.Unlock()
		return nil, refuse(vod.CodeSessionExpired, "vodSessionKey unknown or expired")
	}
	if sess.FileID != "" {
		// A repeated commit answers the same file: never a second media file.
		f := s.files[sess.FileID]
		f.Commits++
		s.mu.Unlock()
		return commitAnswer(f), nil
	}
	if verr := s.checkObjectLocked(sess.Bucket, sess.VideoKey, sess.VideoSize, "video"); verr != nil {
		s.mu.Unlock()
		return nil, verr
	}
	if verr := s.checkObjectLocked(sess.Bucket, sess.CoverKey, sess.CoverSize, "cover"); verr != nil {
		s.mu.Unlock()
		return nil, verr
	}
	var f *File
	if sess.TargetFileID != "" {
		f = s.files[sess.TargetFileID]
		f.CoverKey, f.CoverURL = sess.CoverKey, s.mediaURL(sess.CoverKey)
		sess.FileID = f.FileID
	} else {
		f = &File{
			FileID: s.newFileIDLocked(), SessionKey: sess.Key, Name: sess.VideoName, Type: sess.VideoType,
			Bucket: sess.Bucket, VideoKey: sess.VideoKey, CoverKey: sess.CoverKey, Size: sess.VideoSize,
			MediaURL: s.mediaURL(sess.VideoKey), StorageRegion: sess.Region, ClassID: sess.ClassID,
			SourceContext: sess.SourceContext, Procedure: sess.Procedure, Created: now,
		}
		if sess.CoverKey != "" {
			f.CoverURL = s.mediaURL(sess.CoverKey)
		}
		if sess.Procedure != "" {
			f.ProcedureTaskID = fmt.Sprintf("%d-procedurev2-%s", s.cfg.AppID, randomHex(16))
		}
		s.files[f.FileID] = f
		sess.FileID = f.FileID
	}
	f.Commits++
	ev := s.recordEventLocked(f)
	s.mu.Unlock()
	s.deliver(ev)
	return commitAnswer(f), nil
}

func commitAnswer(f *File) commitAnswerData {
	d := commitAnswerData{FileID: f.FileID, Video: &mediaURL{URL: f.MediaURL, VerifyContent: randomToken(40)}}
	if f.CoverURL != "" {
		d.Cover = &mediaURL{URL: f.CoverURL, VerifyContent: randomToken(40)}
	}
	return d
}

func (s *Server) checkObjectLocked(bucket, key string, size int64, what string) *vodError {
	if key == "" {
		return nil
	}
	o := s.objects[bucket+"/"+key]
	if o == nil {
		return refuse(vod.CodeUploadIncomplete, "%s object was not uploaded", what)
	}
	if o.Size != size {
		return refuse(vod.CodeUploadIncomplete, "%s object is %d bytes, %d were declared", what, o.Size, size)
	}
	return nil
}

func (s *Server) mediaURL(key string) string {
	return "http://" + s.cfg.MediaDomain + "/" + key
}

// newFileIDLocked returns a unique 19-digit FileId like VOD's.
func (s *Server) newFileIDLocked() string {
	for {
		n, _ := rand.Int(rand.Reader, big.NewInt(8e18))
		id := strconv.FormatInt(n.Int64()+1e18, 10)
		if s.files[id] == nil {
			return id
		}
	}
}

// prepareAnswerData is the data of PrepareUploadUGC: the regions to race.
type prepareAnswerData struct {
	AppID         int64        `json:"appId"`
	CosRegionList []cosRegions `json:"cosRegionList"`
}

type cosRegions struct {
	Region string `json:"region"`
	Domain string `json:"domain"`
}

func (s *Server) prepare(sig string) (any, *vodError) {
	if _, verr := s.useSignature(sig, vod.ActionPrepare); verr != nil {
		return nil, verr
	}
	d := prepareAnswerData{AppID: s.cfg.AppID}
	for _, r := range s.cfg.Regions {
		d.CosRegionList = append(d.CosRegionList, cosRegions{Region: r, Domain: s.BucketHost(r)})
	}
	return d, nil
}

func oneLine(err error) string {
	var fe *vod.FieldError
	if errors.As(err, &fe) {
		return fe.Error()
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
