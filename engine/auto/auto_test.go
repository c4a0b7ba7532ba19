package auto

import (
	"errors"
	"runtime"
	"testing"
)

func TestSelect(t *testing.T) {
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
		f, got, err := Select(tt.name)
		if tt.err {
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Select(%q) error %v, want ErrUnavailable", tt.name, err)
			}
			continue
		}
		if err != nil || got != tt.want || f == nil {
			t.Errorf("Select(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}
