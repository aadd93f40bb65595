package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// logFlags are the logging options of the proxy.
type logFlags struct {
	format, level *string
}

func addLogFlags(f *flags) logFlags {
	return logFlags{
		format: f.String("log-format", "text", "log format: text or json (one object per line)"),
		level:  f.String("log-level", "info", "least important messages logged: debug, info, warn or error"),
	}
}

// logger returns a logger writing to w as the flags say.
func (lf logFlags) logger(w io.Writer) (*slog.Logger, error) {
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	level, ok := levels[strings.ToLower(*lf.level)]
	if !ok {
		return nil, fmt.Errorf("--log-level: want debug, info, warn or error, not %q", *lf.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch *lf.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, not %q", *lf.format)
}
