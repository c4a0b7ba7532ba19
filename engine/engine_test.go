package engine

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoggerFor(t *testing.T) {
	if l := (Options{}).LoggerFor("std"); l == nil {
		t.Fatal("LoggerFor without a Logger returned nil")
	} else {
		l.Info("discarded")
	}
	var buf bytes.Buffer
	o := Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	o.LoggerFor("gnet").Info("listening")
	if !strings.Contains(buf.String(), "engine=gnet") {
		t.Fatalf("log line %q lacks engine=gnet", buf.String())
	}
}
