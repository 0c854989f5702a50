package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/vodpipe/vodpipe/internal/config"
	"github.com/vodpipe/vodpipe/pkg/vod"
)

// numericParams are printed as JSON numbers by --decode.
var numericParams = map[string]bool{
	"currentTimeStamp": true, "expireTime": true, "random": true, "classId": true,
	"oneTimeValid": true, "vodSubAppId": true, "taskPriority": true,
}

// runSign implements `vodpipe sign`: make an upload signature from the
// environment's keys, or decode one with --decode.
func runSign(args []string, stdout, stderr io.Writer, now func() time.Time) int {
	fs := pflag.NewFlagSet("sign", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vodpipe sign [flags]            print an upload signature (VODPIPE_SECRET_ID, VODPIPE_SECRET_KEY)")
		fmt.Fprintln(stderr, "       vodpipe sign --decode SIGNATURE print a signature's parameters as JSON")
		fs.PrintDefaults()
	}
	var (
		decode         = fs.String("decode", "", "decode this signature instead of making one")
		procedure      = fs.String("procedure", "", "task flow to run after upload")
		storageRegion  = fs.String("storage-region", "", "storage region, e.g. ap-guangzhou")
		classID        = fs.Int64("class-id", 0, "media category id")
		sourceContext  = fs.String("source-context", "", "passthrough returned in the NewFileUpload event (at most 250 characters)")
		oneTime        = fs.Bool("one-time", false, "the signature is valid for one ApplyUploadUGC only")
		expire         = fs.Duration("expire", 24*time.Hour, "validity (at most 2160h, 90 days)")
		subAppID       = fs.Uint64("sub-app-id", 0, "VOD sub-application id")
		sessionContext = fs.String("session-context", "", "passthrough to the task flow")
		taskPriority   = fs.String("task-priority", "", "task-flow priority, -10..10")
		taskNotifyMode = fs.String("task-notify-mode", "", "task-flow notify mode: Finish, Change or None")
	)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vodpipe sign: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var creds config.Credentials
	if err := config.Load(&creds); err != nil {
		fmt.Fprintln(stderr, "vodpipe sign:", err)
		return 2
	}
	key, err := creds.Key()
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe sign:", err)
		return 2
	}
	if *decode != "" {
		return decodeSignature(*decode, key, stdout, stderr, now())
	}
	if creds.SecretID == "" || key == "" {
		fmt.Fprintln(stderr, "vodpipe sign: set VODPIPE_SECRET_ID and VODPIPE_SECRET_KEY (or VODPIPE_SECRET_KEY_FILE)")
		return 2
	}
	t := now()
	p := vod.SignatureParams{
		SecretID: creds.SecretID, CurrentTimeStamp: t.Unix(), ExpireTime: t.Add(*expire).Unix(), Random: vod.NewRandom(),
		Procedure: *procedure, StorageRegion: *storageRegion, ClassID: *classID, SourceContext: *sourceContext,
		OneTimeValid: *oneTime, VodSubAppID: *subAppID, SessionContext: *sessionContext, TaskNotifyMode: *taskNotifyMode,
	}
	if *taskPriority != "" {
		n, err := strconv.Atoi(*taskPriority)
		if err != nil {
			fmt.Fprintln(stderr, "vodpipe sign: --task-priority must be an integer")
			return 2
		}
		p.TaskPriority, p.HasTaskPriority = n, true
	}
	sig, err := vod.Sign(key, p)
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe sign:", oneLine(err))
		return 1
	}
	fmt.Fprintln(stdout, sig)
	return 0
}

func decodeSignature(sig, key string, stdout, stderr io.Writer, now time.Time) int {
	s, err := vod.ParseSignature(sig)
	if err != nil {
		fmt.Fprintln(stderr, "vodpipe sign --decode:", oneLine(err))
		return 1
	}
	out := map[string]any{}
	values, _ := url.ParseQuery(s.Original) // ParseSignature already parsed it.
	for k, vs := range values {
		v := vs[len(vs)-1]
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && numericParams[k] {
			out[k] = n
		} else {
			out[k] = v
		}
	}
	out["valid"] = key != "" && s.CheckMAC(key)
	out["expired"] = s.Expired(now)
	if err := s.CheckTimes(now, 0); err != nil && !errors.Is(err, vod.ErrSignatureExpired) {
		out["problems"] = oneLine(err)
	}
	if key == "" {
		fmt.Fprintln(stderr, "vodpipe sign --decode: VODPIPE_SECRET_KEY not set, HMAC not checked")
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(stderr, "vodpipe sign --decode:", err)
		return 1
	}
	return 0
}
