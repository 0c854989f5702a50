package vod

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// EventTypeNewFileUpload is the EventType of VOD's upload-completion event.
const EventTypeNewFileUpload = "NewFileUpload"

// EventTypeProcedureStateChanged is the EventType VOD sends when a task flow changes state.
const EventTypeProcedureStateChanged = "ProcedureStateChanged"

// MaxEventSize bounds an event body; VOD's events are a few KiB.
const MaxEventSize = 1 << 20

// ErrEventMalformed is returned for an event body that is not a valid VOD event.
var ErrEventMalformed = errors.New("vod: event malformed")

// Event is one VOD event callback, in the v3 format. Only the part for its
// EventType is set.
type Event struct {
	EventType       string           `json:"EventType"`
	EventHandle     string           `json:"EventHandle,omitempty"`
	FileUploadEvent *FileUploadEvent `json:"FileUploadEvent,omitempty"`
	// ProcedureStateChangeEvent is kept raw: vodpipe passes it through.
	ProcedureStateChangeEvent json.RawMessage `json:"ProcedureStateChangeEvent,omitempty"`
}

// FileUploadEvent is the body of a NewFileUpload event.
type FileUploadEvent struct {
	FileID                 string          `json:"FileId"`
	MediaBasicInfo         *MediaBasicInfo `json:"MediaBasicInfo,omitempty"`
	ProcedureTaskID        string          `json:"ProcedureTaskId"`
	ReviewAudioVideoTaskID string          `json:"ReviewAudioVideoTaskId"`
	MetaData               json.RawMessage `json:"MetaData,omitempty"`
}

// MediaBasicInfo describes the uploaded media file.
type MediaBasicInfo struct {
	Name          string      `json:"Name"`
	Description   string      `json:"Description"`
	CreateTime    string      `json:"CreateTime,omitempty"`
	UpdateTime    string      `json:"UpdateTime,omitempty"`
	ExpireTime    string      `json:"ExpireTime,omitempty"`
	ClassID       int64       `json:"ClassId"`
	ClassName     string      `json:"ClassName,omitempty"`
	ClassPath     string      `json:"ClassPath,omitempty"`
	CoverURL      string      `json:"CoverUrl"`
	Type          string      `json:"Type,omitempty"`
	MediaURL      string      `json:"MediaUrl"`
	TagSet        []string    `json:"TagSet"`
	StorageRegion string      `json:"StorageRegion,omitempty"`
	SourceInfo    *SourceInfo `json:"SourceInfo,omitempty"`
	Vid           string      `json:"Vid,omitempty"`
}

// SourceInfo says where the media came from; SourceContext is the signature's passthrough.
type SourceInfo struct {
	SourceType    string `json:"SourceType"`
	SourceContext string `json:"SourceContext"`
}

// FileUpload is the flattened view of a NewFileUpload event that vodpipe uses.
type FileUpload struct {
	FileID          string
	MediaURL        string
	CoverURL        string
	Name            string
	Type            string
	StorageRegion   string
	ClassID         int64
	SourceContext   string
	ProcedureTaskID string
	CreateTime      time.Time
}

// ParseEvent decodes one event callback body. It checks what vodpipe relies on:
// an EventType, and for NewFileUpload a FileId and media URL.
func ParseEvent(body []byte) (*Event, error) {
	if len(body) > MaxEventSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrEventMalformed, MaxEventSize)
	}
	var e Event
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEventMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrEventMalformed)
	}
	if e.EventType == "" {
		return nil, fmt.Errorf("%w: EventType missing", ErrEventMalformed)
	}
	if e.EventType == EventTypeNewFileUpload {
		if e.FileUploadEvent == nil {
			return nil, fmt.Errorf("%w: FileUploadEvent missing", ErrEventMalformed)
		}
		if e.FileUploadEvent.FileID == "" {
			return nil, fmt.Errorf("%w: FileUploadEvent.FileId missing", ErrEventMalformed)
		}
		if e.FileUploadEvent.MediaBasicInfo == nil || e.FileUploadEvent.MediaBasicInfo.MediaURL == "" {
			return nil, fmt.Errorf("%w: FileUploadEvent.MediaBasicInfo.MediaUrl missing", ErrEventMalformed)
		}
	}
	return &e, nil
}

// FileUpload flattens a NewFileUpload event; ok is false for other event types.
func (e *Event) FileUpload() (FileUpload, bool) {
	if e.EventType != EventTypeNewFileUpload || e.FileUploadEvent == nil {
		return FileUpload{}, false
	}
	f := FileUpload{FileID: e.FileUploadEvent.FileID, ProcedureTaskID: e.FileUploadEvent.ProcedureTaskID}
	if m := e.FileUploadEvent.MediaBasicInfo; m != nil {
		f.MediaURL, f.CoverURL, f.Name, f.Type = m.MediaURL, m.CoverURL, m.Name, m.Type
		f.StorageRegion, f.ClassID = m.StorageRegion, m.ClassID
		if m.SourceInfo != nil {
			f.SourceContext = m.SourceInfo.SourceContext
		}
		f.CreateTime, _ = time.Parse(time.RFC3339, m.CreateTime)
	}
	return f, true
}

// NewFileUploadEvent builds the event VOD sends for f.
func NewFileUploadEvent(f FileUpload) *Event {
	created := f.CreateTime.UTC().Format(time.RFC3339)
	return &Event{
		EventType: EventTypeNewFileUpload,
		FileUploadEvent: &FileUploadEvent{
			FileID: f.FileID,
			MediaBasicInfo: &MediaBasicInfo{
				Name: f.Name, CreateTime: created, UpdateTime: created, ExpireTime: "9999-12-31T23:59:59Z",
				ClassID: f.ClassID, ClassName: "Other", ClassPath: "Other", CoverURL: f.CoverURL,
				Type: f.Type, MediaURL: f.MediaURL, TagSet: []string{}, StorageRegion: f.StorageRegion,
				SourceInfo: &SourceInfo{SourceType: "Upload", SourceContext: f.SourceContext},
			},
			ProcedureTaskID: f.ProcedureTaskID,
		},
	}
}

// PullEventsResponse is the answer of the reliable-callback PullEvents API.
type PullEventsResponse struct {
	Response struct {
		EventSet  []Event     `json:"EventSet"`
		RequestID string      `json:"RequestId"`
		Error     *CloudError `json:"Error,omitempty"`
	} `json:"Response"`
}

// ConfirmEventsRequest acknowledges pulled events by handle.
type ConfirmEventsRequest struct {
	EventHandles []string `json:"EventHandles"`
	SubAppID     uint64   `json:"SubAppId,omitempty"`
}

// ConfirmEventsResponse is the answer of ConfirmEvents.
type ConfirmEventsResponse struct {
	Response struct {
		RequestID string      `json:"RequestId"`
		Error     *CloudError `json:"Error,omitempty"`
	} `json:"Response"`
}

// CloudError is the error object of Tencent Cloud API 3.0 answers.
type CloudError struct {
	Code    string `json:"Code"`
	Message string `json:"Message"`
}

// Error implements error.
func (e *CloudError) Error() string { return "vod: " + e.Code + ": " + e.Message }
