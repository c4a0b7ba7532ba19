package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Levels of a --brief line and of a report's overall result.
const (
	levelOK     = "OK"
	levelWarn   = "WARN"
	levelFailed = "FAILED"
)

// report is the human output shape shared by check, doctor and status
// (docs/commands.md#output): a "bal <command>" header, two-space-indented "key: value"
// lines, four-space-indented list items, and at the end either "next: ..."
// or the triplet what_happened / why_likely / do_this_now.
type report struct {
	command string
	lines   []string
}

func newReport(command string) *report { return &report{command: command} }

// field adds "  key: value". Newlines in value are escaped so that every
// key stays on one line.
func (r *report) field(key string, value any) {
	r.lines = append(r.lines, "  "+key+": "+oneLine(fmt.Sprint(value)))
}

// item adds "    - text" under the previous field.
func (r *report) item(text string) {
	r.lines = append(r.lines, "    - "+oneLine(text))
}

// detail adds "      key: value" under the previous item.
func (r *report) detail(key, value string) {
	r.lines = append(r.lines, "      "+key+": "+oneLine(value))
}

// list adds "  key: none", or "  key: N" followed by one item per entry.
func (r *report) list(key string, items []string) {
	if len(items) == 0 {
		r.field(key, "none")
		return
	}
	r.field(key, len(items))
	for _, it := range items {
		r.item(it)
	}
}

// next ends the report with what to do next when all is well.
func (r *report) next(action string) { r.field("next", action) }

// triplet is the operator message of a report that is not all well.
type triplet struct {
	what, why, do string
}

// problem ends the report with the triplet.
func (r *report) problem(t triplet) {
	r.field("what_happened", t.what)
	r.field("why_likely", t.why)
	r.field("do_this_now", t.do)
}

func (r *report) write(w io.Writer) {
	var b strings.Builder
	b.WriteString("bal " + r.command + "\n")
	for _, l := range r.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	io.WriteString(w, b.String())
}

// brief writes the one line of --brief: "OK ...", "WARN ..." or "FAILED ...".
func brief(w io.Writer, level, msg string) {
	fmt.Fprintf(w, "%s %s\n", level, oneLine(msg))
}

// writeJSON writes v as exactly one indented JSON document and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// oneLine escapes line breaks so a value cannot break the line format.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}
