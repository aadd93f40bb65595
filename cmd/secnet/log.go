package main

import (
	"fmt"
	"io"
	"log/slog"
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(*lf.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
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
