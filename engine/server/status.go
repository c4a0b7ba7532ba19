package server

import (
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/policy"
)

// Status is the live state of a running server: the process-wide fields,
// every service in config order, and — for the single-service views (the
// stable top-level fields of `bal status`, start-up logs) — the first
// service's figures again at top level.
type Status struct {
	PID            int
	ConfigPath     string
	Engine         string // the engine in use ("" before Start)
	FDsPerConn     int    // descriptors one connection holds on Engine (its Cost.PerConn)
	Started        time.Time
	Draining       int // old listeners still finishing connections, every service's (removed ones too)
	Goroutines     int // goroutines of the process now (leak checks)
	Reloads        uint64
	ReloadFailures uint64
	LastReload     *ReloadResult // nil before the first reload

	// Services are the configured services, in config order; present from
	// New on (with zero counters and no Listen before Start).
	Services []ServiceStatus

	// The first service's BindAddress, Port, Listen, Method, Policy and
	// engine counters.
	BindAddress string
	Port        int // as configured
	Listen      netip.AddrPort
	Method      string
	Policy      policy.Status
	Accepted    uint64 // connections admitted by the engines (Policy.Rejected counts refusals)
	BytesIn     uint64 // client→backend bytes, live
	BytesOut    uint64 // backend→client bytes, live
}

// ServiceStatus is one service's live state.
type ServiceStatus struct {
	Name        string
	Protocol    config.Protocol
	BindAddress string // as configured
	Port        int    // as configured
	Listen      netip.AddrPort
	Engine      string
	// MaxConnections is the service's max_concurrent_connections in force.
	MaxConnections int
	// MaxUDPFlows is a UDP service's max_udp_flows in force (0 on TCP).
	MaxUDPFlows int
	Policy      policy.Status
	// Stats are the engines' counters summed over the service's current,
	// draining and drained listeners (Active: open now; bytes live).
	Stats    engine.Stats
	Draining int // the service's old listeners still finishing connections
}

// Status returns the live state.
func (s *Server) Status() Status {
	type pending struct {
		engines []engine.Engine
		policy  *policy.Policy
	}
	s.mu.Lock()
	st := Status{
		PID:            os.Getpid(),
		ConfigPath:     s.snap.Path,
		Started:        s.started,
		Goroutines:     runtime.NumGoroutine(),
		Reloads:        s.reloads.Load(),
		ReloadFailures: s.reloadFailures.Load(),
		Services:       make([]ServiceStatus, len(s.services)),
	}
	if s.last != nil {
		r := *s.last
		st.LastReload = &r
	}
	reads := make([]pending, len(s.services))
	for i, svc := range s.services {
		cfg := svc.config()
		ss := ServiceStatus{
			Name:           cfg.Name,
			Protocol:       cfg.Protocol,
			BindAddress:    cfg.BindAddress,
			Port:           cfg.Port,
			MaxConnections: cfg.Runtime.MaxConcurrentConnections,
			Stats:          engine.Stats(svc.retired),
			Draining:       len(svc.draining),
		}
		if cfg.Protocol == config.UDP {
			ss.MaxUDPFlows = cfg.Runtime.MaxUDPFlows
		}
		reads[i].policy = svc.policy
		if svc.cur != nil {
			ss.Listen, ss.Engine = svc.cur.addr, svc.cur.impl.Name
			reads[i].engines = append(reads[i].engines, svc.cur.eng)
			if st.Engine == "" {
				st.Engine, st.FDsPerConn = svc.cur.impl.Name, svc.cur.impl.Cost.PerConn
			}
		}
		for l := range svc.draining {
			reads[i].engines = append(reads[i].engines, l.eng)
		}
		st.Draining += ss.Draining
		st.Services[i] = ss
	}
	for svc := range s.gone {
		st.Draining += len(svc.draining)
	}
	s.mu.Unlock()

	for i, r := range reads {
		ss := &st.Services[i]
		sum := stats(ss.Stats)
		for _, e := range r.engines {
			sum.add(e.Stats())
		}
		ss.Stats = engine.Stats(sum)
		ss.Policy = r.policy.Status()
	}
	if len(st.Services) > 0 {
		first := st.Services[0]
		st.BindAddress, st.Port, st.Listen = first.BindAddress, first.Port, first.Listen
		st.Method = string(first.Policy.Method)
		st.Policy = first.Policy
		st.Accepted, st.BytesIn, st.BytesOut = first.Stats.Accepted, first.Stats.BytesIn, first.Stats.BytesOut
	}
	return st
}
