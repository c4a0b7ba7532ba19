package limits

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestNoFile(t *testing.T) {
	soft, hard, err := NoFile()
	if err != nil || soft == 0 || soft > hard {
		t.Fatalf("NoFile() = %d, %d, %v", soft, hard, err)
	}
}

func TestSomaxconn(t *testing.T) {
	n, err := Somaxconn()
	switch runtime.GOOS {
	case "linux":
		data, rerr := os.ReadFile("/proc/sys/net/core/somaxconn")
		if rerr != nil {
			t.Skip(rerr)
		}
		want, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || n != want {
			t.Errorf("Somaxconn() = %d, %v; want %d", n, err, want)
		}
	case "darwin":
		if err != nil || n <= 0 {
			t.Errorf("Somaxconn() = %d, %v", n, err)
		}
	}
}

func TestNeeded(t *testing.T) {
	std := 2
	if runtime.GOOS == "linux" {
		std = 6
	}
	tests := []struct {
		conns  int
		engine string
		want   uint64
	}{
		{0, "gnet", Reserve},
		{-5, "gnet", Reserve},
		{4000, "gnet", 8000 + Reserve},
		{4000, "std", uint64(4000*std) + Reserve},
		{12000, "std", uint64(12000*std) + Reserve},
	}
	for _, tt := range tests {
		if got := Needed(tt.conns, tt.engine); got != tt.want {
			t.Errorf("Needed(%d, %s) = %d, want %d", tt.conns, tt.engine, got, tt.want)
		}
	}
}

func TestOpenFDs(t *testing.T) {
	if runtime.GOOS != "linux" {
		if OpenFDs() != -1 {
			t.Fatal("OpenFDs should be unknown (-1) off Linux")
		}
		return
	}
	before := OpenFDs()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if after := OpenFDs(); before <= 0 || after != before+1 {
		t.Fatalf("OpenFDs %d before opening a file, %d after", before, after)
	}
}
