package vod

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// docEvent is the NewFileUpload example from VOD's documentation.
const docEvent = `{"EventType":"NewFileUpload","FileUploadEvent":{
  "FileId":"5285890784273533167",
  "MediaBasicInfo":{"Name":"demo","Description":"","CreateTime":"2019-01-09T16:36:22Z",
    "UpdateTime":"2019-01-09T16:36:22Z","ExpireTime":"9999-12-31T23:59:59Z","ClassId":0,"ClassName":"Other",
    "ClassPath":"Other","CoverUrl":"","Type":"mp4","MediaUrl":"http://1234.vod2.myqcloud.com/xxx/yyy/f0.mp4","TagSet":[],
    "StorageRegion":"ap-chongqing",
    "SourceInfo":{"SourceType":"Upload","SourceContext":"job=42"},"Vid":"v1"},
  "ProcedureTaskId":"1234-procedurev2-abc","ReviewAudioVideoTaskId":""}}`

func TestParseEventDocumentedExample(t *testing.T) {
	e, err := ParseEvent([]byte(docEvent))
	if err != nil {
		t.Fatal(err)
	}
	f, ok := e.FileUpload()
	if !ok {
		t.Fatal("not a file upload")
	}
	want := FileUpload{FileID: "5285890784273533167", MediaURL: "http://1234.vod2.myqcloud.com/xxx/yyy/f0.mp4",
		Name: "demo", Type: "mp4", StorageRegion: "ap-chongqing", SourceContext: "job=42",
		ProcedureTaskID: "1234-procedurev2-abc", CreateTime: time.Date(2019, 1, 9, 16, 36, 22, 0, time.UTC)}
	if f != want {
		t.Fatalf("FileUpload = %+v\nwant %+v", f, want)
	}
}

func TestBuildThenParseEvent(t *testing.T) {
	in := FileUpload{FileID: "f1", MediaURL: "http://x/y.mp4", CoverURL: "http://x/y.jpg", Name: "n", Type: "mp4",
		StorageRegion: "ap-guangzhou", ClassID: 3, SourceContext: "ctx", ProcedureTaskID: "t1",
		CreateTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := json.Marshal(NewFileUploadEvent(in))
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := e.FileUpload()
	if out != in {
		t.Fatalf("round trip = %+v\nwant %+v", out, in)
	}
}

func TestParseEventRefusals(t *testing.T) {
	cases := map[string]string{
		"not json":         `{"EventType":`,
		"no type":          `{"FileUploadEvent":{"FileId":"1"}}`,
		"no body":          `{"EventType":"NewFileUpload"}`,
		"no file id":       `{"EventType":"NewFileUpload","FileUploadEvent":{"MediaBasicInfo":{"MediaUrl":"u"}}}`,
		"no media url":     `{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":"1"}}`,
		"trailing garbage": `{"EventType":"X"} {}`,
		"too large":        `{"EventType":"X","Pad":"` + strings.Repeat("a", MaxEventSize) + `"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseEvent([]byte(body)); !errors.Is(err, ErrEventMalformed) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	// Other event types pass through untouched.
	e, err := ParseEvent([]byte(`{"EventType":"ProcedureStateChanged","ProcedureStateChangeEvent":{"TaskId":"t"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.FileUpload(); ok || string(e.ProcedureStateChangeEvent) != `{"TaskId":"t"}` {
		t.Fatalf("event = %+v", e)
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(docEvent))
	f.Add([]byte(`{"EventType":"X"}`))
	f.Add([]byte(`{"EventType":"NewFileUpload","FileUploadEvent":{"FileId":"1","MediaBasicInfo":{"MediaUrl":"u"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := ParseEvent(body)
		if err != nil {
			if !errors.Is(err, ErrEventMalformed) {
				t.Fatalf("error %v is not ErrEventMalformed", err)
			}
			return
		}
		// A parsed NewFileUpload always has what vodpipe relies on, and survives a round trip.
		if f, ok := e.FileUpload(); ok {
			if f.FileID == "" || f.MediaURL == "" {
				t.Fatalf("parsed without FileId or MediaUrl: %+v", f)
			}
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		e2, err := ParseEvent(b)
		if err != nil {
			t.Fatalf("re-encoded event does not parse: %v", err)
		}
		b2, err := json.Marshal(e2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, b2) {
			t.Fatalf("the event changed through a round trip:\n%s\n%s", b, b2)
		}
		f1, ok1 := e.FileUpload()
		f2, ok2 := e2.FileUpload()
		if ok1 != ok2 || f1 != f2 {
			t.Fatalf("the upload changed through a round trip: %+v %v, %+v %v", f1, ok1, f2, ok2)
		}
	})
}
