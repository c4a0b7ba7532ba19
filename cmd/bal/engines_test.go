package main

import (
	"errors"
	"runtime"
	"testing"
)

func TestSelectEngine(t *testing.T) {
	onLinux := runtime.GOOS == "linux"
	auto := "std"
	if onLinux {
		auto = "gnet"
	}
	tests := []struct {
		name, want string
		err        bool
	}{
		{"auto", auto, false},
		{"", auto, false},
		{"std", "std", false},
		{"gnet", "gnet", !onLinux},
		{"epoll", "", true},
	}
	for _, tt := range tests {
		e, err := selectEngine(tt.name)
		if tt.err {
			if !errors.Is(err, errEngineUnavailable) {
				t.Errorf("selectEngine(%q) error %v, want errEngineUnavailable", tt.name, err)
			}
			continue
		}
		if err != nil || e.Name != tt.want || e.New == nil || e.NewUDP == nil {
			t.Errorf("selectEngine(%q) = %q, %v; want %q", tt.name, e.Name, err, tt.want)
		}
	}
}
