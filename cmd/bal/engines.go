package main

import (
	"errors"
	"fmt"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/limits"
	"github.com/bal-lb/bal/engine/server"
	stdengine "github.com/bal-lb/bal/engine_darwin"
)

// errEngineUnavailable: the engine named does not exist on this OS.
var errEngineUnavailable = errors.New("engine not available on this system")

// stdEngine is the portable standard-library engine, available everywhere,
// for TCP and UDP services.
var stdEngine = server.Engine{Name: config.EngineStd, New: stdengine.New, NewUDP: stdengine.NewUDP, Cost: stdengine.Cost()}

// selectEngine maps runtime.engine to the engine bal runs (it is the
// server's Options.Engines): "auto" is the gnet engine on Linux and the
// standard-library engine elsewhere, "std" is always available, "gnet" only
// on Linux. cmd/bal is the one package that links both engines.
func selectEngine(name string) (server.Engine, error) {
	gnet, haveGnet := gnetEngine()
	switch name {
	case config.EngineAuto, "":
		if haveGnet {
			return gnet, nil
		}
		return stdEngine, nil
	case config.EngineStd:
		return stdEngine, nil
	case config.EngineGnet:
		if !haveGnet {
			return server.Engine{}, fmt.Errorf("runtime.engine %q: %w (Linux only)", name, errEngineUnavailable)
		}
		return gnet, nil
	}
	return server.Engine{}, fmt.Errorf("runtime.engine %q: %w", name, errEngineUnavailable)
}

// engineCost is the descriptor cost of the engine named (a concrete name or
// a runtime.engine value); the std engine's for a name this system lacks.
// bal doctor computes the RLIMIT_NOFILE it recommends from it, with the
// formula the engines enforce.
func engineCost(name string) limits.Cost {
	e, err := selectEngine(name)
	if err != nil {
		return stdEngine.Cost
	}
	return e.Cost
}
