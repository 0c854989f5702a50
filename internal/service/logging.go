package service

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LogConfig is how every service logs (prefix VODPIPE_).
type LogConfig struct {
	Level  LogLevel `envconfig:"LOG_LEVEL" default:"info" desc:"least severe log level written: debug, info, warn or error"`
	Format string   `envconfig:"LOG_FORMAT" default:"json" desc:"log line format: json (one JSON object per line) or text (key=value)"`
}

// LogLevel is a slog level read from its name.
type LogLevel slog.Level

// Decode implements envconfig.Decoder.
func (l *LogLevel) Decode(s string) error {
	var v slog.Level
	if err := v.UnmarshalText([]byte(s)); err != nil {
		return levelError{}
	}
	*l = LogLevel(v)
	return nil
}

type levelError struct{}

func (levelError) Error() string  { return "unknown log level" }
func (levelError) Reason() string { return "must be debug, info, warn or error" }

// Logger returns the logger c describes, writing to w.
func (c LogConfig) Logger(w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.Level(c.Level)}
	switch strings.ToLower(c.Format) {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("VODPIPE_LOG_FORMAT must be json or text, not %q", c.Format)
}
