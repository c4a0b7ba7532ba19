package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name string
		err  error
		want FailReason
	}{
		{"nil", nil, FailOther},
		{"refused", refused, FailRefused},
		{"wrapped refused", fmt.Errorf("backend a: %w", refused), FailRefused},
		{"sentinel timeout", fmt.Errorf("x: %w", ErrConnectTimeout), FailTimeout},
		{"deadline", os.ErrDeadlineExceeded, FailTimeout},
		{"context", context.DeadlineExceeded, FailTimeout},
		{"etimedout", syscall.ETIMEDOUT, FailTimeout},
		{"unreachable", syscall.EHOSTUNREACH, FailOther},
		{"other", errors.New("boom"), FailOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Fatalf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestClassifyRealDialTimeout(t *testing.T) {
	// A dial that cannot finish in time must classify as timeout. 10.255.255.1
	// is not used: tests never send traffic off loopback. A listener with a
	// full backlog is not reliable either, so use an already-expired context.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	var d net.Dialer
	_, err := d.DialContext(ctx, "tcp", "127.0.0.1:1")
	if err == nil {
		t.Fatal("dial with expired context succeeded")
	}
	if got := Classify(err); got != FailTimeout {
		t.Fatalf("Classify(%v) = %v, want timeout", err, got)
	}
}

func TestClassifyRealRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		t.Skip("port was reused by another process")
	}
	if got := Classify(err); got != FailRefused {
		t.Fatalf("Classify(%v) = %v, want refused", err, got)
	}
}

func TestFailReasonString(t *testing.T) {
	for r, want := range map[FailReason]string{FailOther: "other", FailTimeout: "timeout", FailRefused: "refused"} {
		if r.String() != want {
			t.Errorf("%d.String() = %q, want %q", r, r.String(), want)
		}
	}
}

func TestLocalCause(t *testing.T) {
	connect := func(e syscall.Errno) error {
		return fmt.Errorf("connect 10.0.0.1:80: %w", os.NewSyscallError("connect", e))
	}
	tests := []struct {
		name string
		err  error
		want LocalResource
	}{
		{"nil", nil, ""},
		{"emfile", connect(syscall.EMFILE), LocalFDs},
		{"enfile", connect(syscall.ENFILE), LocalFDs},
		{"eaddrnotavail", connect(syscall.EADDRNOTAVAIL), LocalPorts},
		{"enomem", connect(syscall.ENOMEM), LocalMemory},
		{"enobufs", syscall.ENOBUFS, LocalMemory},
		{"refused", connect(syscall.ECONNREFUSED), ""},
		{"timeout", ErrConnectTimeout, ""},
		{"other", errors.New("boom"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LocalCause(tt.err); got != tt.want {
				t.Fatalf("LocalCause(%v) = %q, want %q", tt.err, got, tt.want)
			}
			if got := IsLocal(tt.err); got != (tt.want != "") {
				t.Fatalf("IsLocal(%v) = %v, want %v", tt.err, got, tt.want != "")
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	good := func() Options {
		return Options{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Tunables: NewTunableStore(Tunables{ConnectTimeout: time.Second})}
	}
	tests := []struct {
		name  string
		edit  func(*Options)
		field string // named in the error; "" means valid
	}{
		{"valid", func(*Options) {}, ""},
		{"valid with everything set", func(o *Options) {
			o.Backlog, o.Loops = 128, 4
			o.Tunables.Store(Tunables{ConnectTimeout: time.Second, IdleTimeout: time.Minute, ProxyProtocol: ProxyV2})
		}, ""},
		{"no address", func(o *Options) { o.Listen = netip.AddrPort{} }, "Listen"},
		{"negative backlog", func(o *Options) { o.Backlog = -1 }, "Backlog"},
		{"negative loops", func(o *Options) { o.Loops = -1 }, "Loops"},
		{"nil tunables", func(o *Options) { o.Tunables = nil }, "Tunables"},
		{"empty store", func(o *Options) { o.Tunables = &TunableStore{} }, "Tunables"},
		{"zero connect timeout", func(o *Options) { o.Tunables.Store(Tunables{}) }, "ConnectTimeout"},
		{"negative idle timeout", func(o *Options) { o.Tunables.Store(Tunables{ConnectTimeout: time.Second, IdleTimeout: -1}) }, "IdleTimeout"},
		{"unknown proxy protocol", func(o *Options) { o.Tunables.Store(Tunables{ConnectTimeout: time.Second, ProxyProtocol: 9}) }, "ProxyProtocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good()
			tt.edit(&o)
			err := o.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate: %v, want ErrInvalidOptions naming %s", err, tt.field)
			}
		})
	}
	if err := CheckNew(good(), nil); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("CheckNew with a nil policy: %v", err)
	}
}
