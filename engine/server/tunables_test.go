package server

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

func TestTunables(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name    string
		mod     func(s *config.Service)
		check   func(t *testing.T, tu engine.Tunables)
		invalid bool
	}{
		{"plain", func(*config.Service) {}, func(t *testing.T, tu engine.Tunables) {
			if tu.ProxyIn != engine.ProxyInOff || tu.Trusted != nil || tu.Inspect || tu.ProxyProtocol != engine.ProxyOff ||
				tu.ConnectTimeout != 1234*time.Millisecond || tu.IdleTimeout != 5*time.Second {
				t.Errorf("%+v", tu)
			}
		}, false},
		{"outbound v2", func(s *config.Service) { s.Runtime.ProxyProtocol = config.ProxyV2 }, func(t *testing.T, tu engine.Tunables) {
			if tu.ProxyProtocol != engine.ProxyV2 {
				t.Errorf("%+v", tu)
			}
		}, false},
		{"proxy in any", func(s *config.Service) {
			s.Access.AcceptProxyProtocol, s.Access.TrustedProxies = config.ProxyAny, trusted
			s.Runtime.ProxyHeaderTimeout = 700 * time.Millisecond
		}, func(t *testing.T, tu engine.Tunables) {
			if tu.ProxyIn != engine.ProxyInAny || tu.ProxyHeaderTimeout != 700*time.Millisecond || tu.Trusted == nil ||
				!tu.Trusted.Contains(netip.MustParseAddr("10.1.2.3")) || tu.Trusted.Contains(netip.MustParseAddr("192.0.2.1")) {
				t.Errorf("%+v", tu)
			}
		}, false},
		{"proxy in v1", func(s *config.Service) {
			s.Access.AcceptProxyProtocol, s.Access.TrustedProxies = config.ProxyV1, trusted
		},
			func(t *testing.T, tu engine.Tunables) {
				if tu.ProxyIn != engine.ProxyInV1 {
					t.Errorf("%+v", tu)
				}
			}, false},
		{"sni route inspects", func(s *config.Service) {
			s.Routes = []config.Route{{Name: "api", Match: config.Match{SNI: []string{"api.example.com"}}}}
			s.Runtime.TLSInspectTimeout = 900 * time.Millisecond
		}, func(t *testing.T, tu engine.Tunables) {
			if !tu.Inspect || tu.InspectTimeout != 900*time.Millisecond {
				t.Errorf("%+v", tu)
			}
		}, false},
		{"source route does not inspect", func(s *config.Service) {
			s.Routes = []config.Route{{Name: "office", Match: config.Match{Source: trusted}}}
		}, func(t *testing.T, tu engine.Tunables) {
			if tu.Inspect {
				t.Errorf("%+v", tu)
			}
		}, false},
		{"unknown accept_proxy_protocol", func(s *config.Service) { s.Access.AcceptProxyProtocol = "v3" }, nil, true},
		{"invalid trusted prefix", func(s *config.Service) {
			s.Access.AcceptProxyProtocol, s.Access.TrustedProxies = config.ProxyV2, []netip.Prefix{{}}
		}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := svcCfg("s", 1, netip.MustParseAddrPort("127.0.0.1:9"))
			svc.Runtime.BackendConnectTimeout, svc.Runtime.ConnectionIdleTimeout = 1234*time.Millisecond, 5*time.Second
			tt.mod(&svc)
			tu, err := tunables(&svc)
			if tt.invalid {
				if err == nil {
					t.Fatalf("tunables = %+v, want an error", tu)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := (engine.Options{Listen: netip.MustParseAddrPort("127.0.0.1:1"), Tunables: engine.NewTunableStore(tu)}).Validate(); err != nil {
				t.Errorf("the engines would refuse these tunables: %v", err)
			}
			tt.check(t, tu)
		})
	}
}
