package main

import (
	"bufio"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// TestSystemdUnit: sample/bal.service runs bal in the foreground as
// Type=notify, reloads with bal graceful, and keeps its hardening; when
// systemd-analyze is installed, the unit verifies cleanly.
func TestSystemdUnit(t *testing.T) {
	path := filepath.Join(sampleDir(t), "bal.service")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("not key=value: %q", line)
			continue
		}
		keys[k] = append(keys[k], v)
	}
	want := map[string]string{
		"Type":                    "notify",
		"ExecStart":               "/usr/local/bin/bal start -c /etc/bal/config.yaml",
		"ExecReload":              "/usr/local/bin/bal graceful",
		"Environment":             "BAL_HOME=/var/lib/bal",
		"User":                    "bal",
		"LimitNOFILE":             "65536",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"ReadWritePaths":          "/var/lib/bal",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"StateDirectoryMode":      "0700",
	}
	for k, v := range want {
		if got := keys[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if strings.Contains(keys["ExecStart"][0], " -d") {
		t.Error("under systemd bal must run in the foreground")
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: static checks only")
		return
	}
	// Verify a copy whose commands point at the binary under test.
	unit := filepath.Join(t.TempDir(), "bal.service")
	baltest.WriteFile(t, unit, strings.ReplaceAll(string(data), "/usr/local/bin/bal", baltest.NeedBinary(t)))
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestLaunchdPlist: sample/com.bal.daemon.plist is well-formed and runs
// bal start in the foreground with a BAL_HOME.
func TestLaunchdPlist(t *testing.T) {
	f, err := os.Open(filepath.Join(sampleDir(t), "com.bal.daemon.plist"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	var texts []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("plist is not well-formed XML: %v", err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if s := strings.TrimSpace(string(v)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced elements")
	}
	got := strings.Join(texts, " ")
	for _, want := range []string{
		"Label com.bal.daemon",
		"ProgramArguments /usr/local/bin/bal start -c /Users/your-user/.bal/config.yaml",
		"BAL_HOME /Users/your-user/.bal",
		"ExitTimeOut 40",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("plist lacks %q: %s", want, got)
		}
	}
}
