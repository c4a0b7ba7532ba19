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
	tests := []struct {
		name  string
		cost  Cost
		conns int
		want  uint64
	}{
		// used = conns·PerConn + 64; the answer n is the smallest with
		// used + 16 + Spare + n/64 ≤ n.
		{"no connections", Cost{PerConn: 2}, 0, 81},
		{"negative counts as none", Cost{PerConn: 2}, -5, 81},
		{"2 per connection", Cost{PerConn: 2}, 4000, 8208},
		{"6 per connection", Cost{PerConn: 6}, 3000, 18366},
		{"spare counts", Cost{PerConn: 2, Spare: 8}, 9500, 19390},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cost.Needed(tt.conns)
			if got != tt.want {
				t.Fatalf("Needed(%d) = %d, want %d", tt.conns, got, tt.want)
			}
		})
	}
}

// TestNeededIsWhatRoomAdmits: at Needed(m), an engine whose process holds
// Overhead descriptors and m-1 connections admits the m-th connection, and
// one descriptor less refuses it: doctor recommends what the engines
// enforce.
func TestNeededIsWhatRoomAdmits(t *testing.T) {
	for _, c := range []Cost{{PerConn: 2}, {PerConn: 6}, {PerConn: 2, Spare: 16}, {PerConn: 1, Spare: 3}} {
		for _, m := range []int{1, 7, 100, 4000, 12000, 100000} {
			n := int64(c.Needed(m))
			open := Overhead + int64(m-1)*int64(c.PerConn)
			if !c.Room(n, open, int64(c.PerConn)) {
				t.Errorf("%+v: at Needed(%d) = %d the last connection does not fit", c, m, n)
			}
			if c.Room(n-1, open, int64(c.PerConn)) {
				t.Errorf("%+v: Needed(%d) = %d is not the smallest limit that fits", c, m, n)
			}
		}
	}
}

func TestRoom(t *testing.T) {
	c := Cost{PerConn: 2, Spare: 4}
	tests := []struct {
		name              string
		limit, open, need int64
		want              bool
	}{
		{"unknown limit", 0, 1 << 40, 3, true},
		{"plenty", 1024, 100, 3, true},
		{"reserve kept", 1024, 1024 - 3 - (16 + 4 + 16), 3, true},
		{"one into the reserve", 1024, 1024 - 3 - (16 + 4 + 16) + 1, 3, false},
		{"over", 1024, 1024, 1, false},
	}
	for _, tt := range tests {
		if got := c.Room(tt.limit, tt.open, tt.need); got != tt.want {
			t.Errorf("%s: Room(%d, %d, %d) = %v, want %v", tt.name, tt.limit, tt.open, tt.need, got, tt.want)
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
