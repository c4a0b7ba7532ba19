package pool

import (
	"fmt"
	"strings"
)

// AdminState is what an operator set for a backend
// (docs/operations.md#take-a-backend-out-for-a-deploy): ready takes
// connections; drain and maint take none (open ones continue), and maint
// also pauses the backend's active health checks. The zero value is Ready.
type AdminState uint32

// Admin states.
const (
	Ready AdminState = iota
	Drain
	Maint
)

var adminNames = [...]string{Ready: "ready", Drain: "drain", Maint: "maint"}

// AdminStates returns every state in the order status and metrics list them.
func AdminStates() []AdminState { return []AdminState{Ready, Drain, Maint} }

// String is the state as written in the CLI, the control socket, status,
// metrics and the state file.
func (s AdminState) String() string {
	if int(s) < len(adminNames) {
		return adminNames[s]
	}
	return fmt.Sprintf("AdminState(%d)", uint32(s))
}

// ParseAdminState reads "ready", "drain" or "maint" (case-insensitive).
func ParseAdminState(s string) (AdminState, error) {
	for i, n := range adminNames {
		if strings.EqualFold(s, n) {
			return AdminState(i), nil
		}
	}
	return Ready, fmt.Errorf("unknown state %q: use ready, drain or maint", s)
}

// Admin is the backend's admin state.
func (b *Backend) Admin() AdminState { return AdminState(b.admin.Load()) }

// InService reports whether the backend takes new connections as far as
// its admin state goes (Ready).
func (b *Backend) InService() bool { return b.admin.Load() == uint32(Ready) }

// SetAdmin sets the admin state and returns the previous one.
func (b *Backend) SetAdmin(s AdminState) AdminState { return AdminState(b.admin.Swap(uint32(s))) }

// SetCheckError records the outcome of the latest active health check:
// nil after a success, else the failure ("check_failed: HTTP status 503
// not in 200-399").
func (b *Backend) SetCheckError(err error) {
	if err == nil {
		b.checkErr.Store(nil)
		return
	}
	s := err.Error()
	b.checkErr.Store(&s)
}

// CheckError is the failure of the latest active health check; "" when it
// succeeded or none ran yet.
func (b *Backend) CheckError() string {
	if p := b.checkErr.Load(); p != nil {
		return *p
	}
	return ""
}
