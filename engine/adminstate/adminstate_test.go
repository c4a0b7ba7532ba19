package adminstate

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func sample() File {
	return File{Version: Version, Backends: []Entry{
		{Service: "web", Pool: "default", Backend: "10.0.0.1:443", State: "drain"},
		{Service: "web", Pool: "api", Backend: "[2001:db8::1]:443", State: "maint"},
		{Service: "db", Pool: "default", Backend: "db-1.internal:5432", State: "drain"},
	}}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := Save(path, sample()); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sample()) {
		t.Fatalf("loaded %+v, saved %+v", got, sample())
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != Mode {
		t.Fatalf("mode %v (%v), want %v", fi.Mode().Perm(), err, os.FileMode(Mode))
	}
	// Saving again replaces the file; no temporary file is left behind.
	if err := Save(path, File{}); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(path); err != nil || len(got.Backends) != 0 || got.Version != Version {
		t.Fatalf("after saving an empty file: %+v %v", got, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries after two saves, want only %s", len(ents), FileName)
	}
	// A missing file is no error: nothing was saved yet.
	if got, err := Load(filepath.Join(t.TempDir(), FileName)); err != nil || len(got.Backends) != 0 {
		t.Fatalf("missing file: %+v %v", got, err)
	}
}

func TestCorrupt(t *testing.T) {
	good := `{"version":1,"backends":[{"service":"web","pool":"default","backend":"10.0.0.1:443","state":"drain"}]}`
	tests := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"truncated", good[:len(good)/2]},
		{"garbage", "\x00\xffnot json at all"},
		{"not an object", `[1,2,3]`},
		{"wrong version", `{"version":2,"backends":[]}`},
		{"no version", `{"backends":[]}`},
		{"unknown field", `{"version":1,"backends":[],"extra":true}`},
		{"unknown entry field", `{"version":1,"backends":[{"service":"web","pool":"default","backend":"10.0.0.1:443","state":"drain","weight":3}]}`},
		{"bad state", `{"version":1,"backends":[{"service":"web","pool":"default","backend":"10.0.0.1:443","state":"off"}]}`},
		{"ready is not stored", `{"version":1,"backends":[{"service":"web","pool":"default","backend":"10.0.0.1:443","state":"ready"}]}`},
		{"no port", `{"version":1,"backends":[{"service":"web","pool":"default","backend":"10.0.0.1","state":"drain"}]}`},
		{"no service", `{"version":1,"backends":[{"pool":"default","backend":"10.0.0.1:443","state":"drain"}]}`},
		{"two documents", good + good},
		{"trailing garbage", good + "}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := Load(path)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the error does not name the file: %v", err)
			}
			if f.Version != Version || len(f.Backends) != 0 {
				t.Fatalf("a corrupt file gave %+v, want an empty state", f)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), FileName)
		big := `{"version":1,"backends":[],"pad":"` + strings.Repeat("x", MaxSize) + `"}`
		if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "over") {
			t.Fatalf("Load = %v, want ErrCorrupt (too large)", err)
		}
	})
}

// TestSymlinksAndSpecialFiles: a symlink at the path is never read through
// nor replaced; a FIFO is refused without blocking.
func TestSymlinksAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere.json")
	if err := Save(target, sample()); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(target)
	link := filepath.Join(dir, FileName)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Load(symlink) = %v, want ErrUnsafe", err)
	}
	if err := Save(link, File{}); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Save(symlink) = %v, want ErrUnsafe", err)
	}
	if after, _ := os.ReadFile(target); string(after) != string(before) {
		t.Fatal("Save wrote through the symlink")
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Fatal("Save replaced the symlink")
	}

	fifo := filepath.Join(t.TempDir(), FileName)
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(fifo); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Load(fifo) = %v, want ErrUnsafe", err)
	}
	if err := Save(fifo, sample()); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Save(fifo) = %v, want ErrUnsafe", err)
	}

	d := filepath.Join(t.TempDir(), FileName)
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(d); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("Load(directory) = %v, want ErrUnsafe", err)
	}
}

// TestHardLinkNotWrittenThrough: saving over a path that is one of two
// hard links replaces that name only; the other keeps its content.
func TestHardLinkNotWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	if err := os.Link(other, path); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, sample()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(other); string(b) != "keep me" {
		t.Fatalf("the other hard link now holds %q", b)
	}
}

// TestUnwritable: a directory the file cannot be created in is an error,
// and the old file stays as it was.
func TestUnwritable(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Save(filepath.Join(notDir, FileName), sample()); err == nil {
		t.Fatal("Save into a path under a regular file succeeded")
	}
	if err := Save(filepath.Join(t.TempDir(), "missing", FileName), sample()); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := Save(path, sample()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		if err := Save(path, File{}); err == nil {
			t.Fatal("Save into a read-only directory succeeded")
		}
		if got, err := Load(path); err != nil || !reflect.DeepEqual(got, sample()) {
			t.Fatalf("the old file changed: %+v %v", got, err)
		}
	}
}

func TestBackendKey(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "10.0.0.1:8080", want: "10.0.0.1:8080"},
		{in: "[::1]:80", want: "[::1]:80"},
		{in: "::1:80", want: "[::1]:80"},
		{in: "[0:0::1]:80", want: "[::1]:80"},
		{in: "2001:db8::1:443", want: "[2001:db8::1]:443"},
		{in: "App-A.Internal:9000", want: "app-a.internal:9000"},
		{in: "[::ffff:10.0.0.1]:80", want: "10.0.0.1:80"},
		{in: "", bad: true},
		{in: "10.0.0.1", bad: true},
		{in: "10.0.0.1:", bad: true},
		{in: "10.0.0.1:0", bad: true},
		{in: "10.0.0.1:65536", bad: true},
		{in: "10.0.0.1:+80", bad: true},
		{in: "host:http", bad: true},
		{in: ":80", bad: true},
		{in: "a b:80", bad: true},
		{in: "::1", bad: true},
	}
	for _, tt := range tests {
		got, err := BackendKey(tt.in)
		if tt.bad != (err != nil) || got != tt.want {
			t.Errorf("BackendKey(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}
