// Package auto picks the engine for runtime.engine: "auto" is the gnet
// engine on Linux and the standard-library engine elsewhere, "std" is always
// available, "gnet" only on Linux. It is the only package that imports both
// engine packages.
package auto

import (
	"errors"
	"fmt"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	stdengine "github.com/bal-lb/bal/engine_darwin"
)

// ErrUnavailable: the engine named does not exist on this OS.
var ErrUnavailable = errors.New("engine not available on this system")

// Select returns the factory and the concrete name ("gnet" or "std") for a
// runtime.engine value.
func Select(name string) (engine.Factory, string, error) {
	switch name {
	case config.EngineAuto, "":
		if gnetFactory != nil {
			return gnetFactory, config.EngineGnet, nil
		}
		return stdengine.New, config.EngineStd, nil
	case config.EngineStd:
		return stdengine.New, config.EngineStd, nil
	case config.EngineGnet:
		if gnetFactory == nil {
			return nil, "", fmt.Errorf("runtime.engine %q: %w (Linux only)", name, ErrUnavailable)
		}
		return gnetFactory, config.EngineGnet, nil
	}
	return nil, "", fmt.Errorf("runtime.engine %q: %w", name, ErrUnavailable)
}
