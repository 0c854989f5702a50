package vodsim

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"sort"
)

// Session is the admin view of an upload session (no credentials, no session key).
type Session struct {
	SecretID      string `json:"secretId"`
	Region        string `json:"storageRegion"`
	Bucket        string `json:"bucket"`
	VideoKey      string `json:"videoKey,omitempty"`
	VideoSize     int64  `json:"videoSize"`
	CoverKey      string `json:"coverKey,omitempty"`
	CoverSize     int64  `json:"coverSize,omitempty"`
	Procedure     string `json:"procedure,omitempty"`
	SourceContext string `json:"sourceContext,omitempty"`
	FileID        string `json:"fileId,omitempty"`
	Applies       int    `json:"applies"`
}

// UploadView is the admin view of an open multipart upload.
type UploadView struct {
	Upload
	Parts []Part `json:"parts"`
}

func (s *Server) adminRoutes(mux *http.ServeMux) {
	get := func(path string, f func() any) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, f()) })
	}
	get("/vodsim/sessions", func() any { return s.Sessions() })
	get("/vodsim/files", func() any { return s.Files() })
	get("/vodsim/objects", func() any { return s.Objects() })
	get("/vodsim/uploads", func() any { return s.Uploads() })
	get("/vodsim/events", func() any { return s.Events() })
	get("/vodsim/signatures", func() any { return s.SignatureUses() })
	get("/vodsim/traffic", func() any { return s.Traffic() })
	get("/vodsim/faults", func() any { return s.faults.get() })
	mux.HandleFunc("PUT /vodsim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f FaultConfig
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "faults: " + err.Error()})
			return
		}
		if err := s.SetFaults(f); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, f)
	})
}

// SetFaults replaces the fault injection in force.
func (s *Server) SetFaults(f FaultConfig) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.faults.set(f)
	s.log.Info("vodsim: faults set", "rules", len(f.Rules), "bandwidth", f.Bandwidth)
	return nil
}

// Sessions lists the upload sessions.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, 0, len(s.sessions))
	for _, x := range s.sessions {
		out = append(out, Session{SecretID: x.SecretID, Region: x.Region, Bucket: x.Bucket, VideoKey: x.VideoKey,
			VideoSize: x.VideoSize, CoverKey: x.CoverKey, CoverSize: x.CoverSize, Procedure: x.Procedure,
			SourceContext: x.SourceContext, FileID: x.FileID, Applies: x.Applies})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VideoKey < out[j].VideoKey })
	return out
}

// Traffic lists, per object key that requests named, the body bytes read
// and the faults injected, with the media name of the session it belongs to.
func (s *Server) Traffic() []ObjectTraffic {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ObjectTraffic, 0, len(s.trafficBy))
	for _, t := range s.trafficBy {
		c := *t
		c.PartStores = maps.Clone(t.PartStores)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bucket+out[i].Key < out[j].Bucket+out[j].Key })
	return out
}

// Files lists committed media files, oldest first.
func (s *Server) Files() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]File, 0, len(s.files))
	for _, f := range s.files {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Objects lists stored objects with size and checksums.
func (s *Server) Objects() []Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Object, 0, len(s.objects))
	for _, o := range s.objects {
		out = append(out, *o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Object returns one stored object.
func (s *Server) Object(bucket, key string) (Object, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[bucket+"/"+key]
	if o == nil {
		return Object{}, false
	}
	return *o, true
}

// OpenObject reads a stored object's bytes (not in discard mode).
func (s *Server) OpenObject(bucket, key string) (io.ReadCloser, error) {
	s.mu.Lock()
	o := s.objects[bucket+"/"+key]
	s.mu.Unlock()
	if o == nil {
		return nil, errNoSuchObject
	}
	return s.blobs.open(o)
}

// Uploads lists open multipart uploads with their parts.
func (s *Server) Uploads() []UploadView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]UploadView, 0, len(s.uploads))
	for _, u := range s.uploads {
		v := UploadView{Upload: *u}
		for _, p := range u.parts {
			v.Parts = append(v.Parts, *p)
		}
		sort.Slice(v.Parts, func(i, j int) bool { return v.Parts[i].Number < v.Parts[j].Number })
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Initiated.Before(out[j].Initiated) })
	return out
}

// Events lists NewFileUpload events and their deliveries.
func (s *Server) Events() []EventRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]EventRecord, 0, len(s.events)-s.eventsHead)
	for _, e := range s.events[s.eventsHead:] {
		c := *e
		c.Attempts = append([]Attempt(nil), e.Attempts...)
		out = append(out, c)
	}
	return out
}

// SignatureUses lists how often each signature was used.
func (s *Server) SignatureUses() []SignatureUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SignatureUse, 0, len(s.sigUses))
	for _, u := range s.sigUses {
		c := *u
		c.Actions = append([]string(nil), u.Actions...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hash < out[j].Hash })
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
