package metrics

import (
	"strings"
	"testing"

	"github.com/bal-lb/bal/engine/policy"
	"github.com/bal-lb/bal/engine/pool"
	"github.com/bal-lb/bal/engine/server"
)

// TestBackendAdminState: one series per state, 1 for the backend's.
func TestBackendAdminState(t *testing.T) {
	st := server.Status{Services: []server.ServiceStatus{{Name: "web", Policy: policy.Status{Pools: []policy.PoolStatus{
		{Name: "api", Route: true, Backends: []policy.BackendStatus{{Address: "10.0.0.1:443", Admin: pool.Drain}, {Address: "10.0.0.2:443", Admin: pool.Maint}}},
		{Name: "default", Backends: []policy.BackendStatus{{Address: "10.0.0.1:443"}}},
	}}}}}
	out := string(Append(nil, st, "v"))
	for _, want := range []string{
		`bal_backend_admin_state{service="web",pool="api",backend="10.0.0.1:443",state="ready"} 0`,
		`bal_backend_admin_state{service="web",pool="api",backend="10.0.0.1:443",state="drain"} 1`,
		`bal_backend_admin_state{service="web",pool="api",backend="10.0.0.1:443",state="maint"} 0`,
		`bal_backend_admin_state{service="web",pool="api",backend="10.0.0.2:443",state="maint"} 1`,
		`bal_backend_admin_state{service="web",pool="default",backend="10.0.0.1:443",state="ready"} 1`,
		`bal_backend_admin_state{service="web",pool="default",backend="10.0.0.1:443",state="drain"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if n := strings.Count(out, "bal_backend_admin_state{"); n != 9 {
		t.Errorf("%d admin state series, want 3 per pool backend (9)", n)
	}
}
