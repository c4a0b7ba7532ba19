package server

import (
	"net/netip"
	"testing"
)

func TestOverlaps(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"0.0.0.0:9295", "127.0.0.1:9295", true},
		{"127.0.0.1:9295", "0.0.0.0:9295", true},
		{"[::]:9295", "127.0.0.1:9295", true},
		{"127.0.0.1:9295", "127.0.0.2:9295", false},
		{"0.0.0.0:9295", "127.0.0.1:9296", false},
		{"127.0.0.1:9295", "127.0.0.1:9295", false}, // not a move: never probed
	}
	for _, tt := range tests {
		if got := overlaps(netip.MustParseAddrPort(tt.a), netip.MustParseAddrPort(tt.b)); got != tt.want {
			t.Errorf("overlaps(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
