package main

import (
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/server"
	stdengine "github.com/bal-lb/bal/engine_darwin"
	gnetengine "github.com/bal-lb/bal/engine_linux"
)

// gnetEngine is the gnet + splice engine, Linux only. Its UDP services run
// on the portable engine's UDP relay until gnet's UDP loops land.
func gnetEngine() (server.Engine, bool) {
	return server.Engine{Name: config.EngineGnet, New: gnetengine.New, NewUDP: stdengine.NewUDP, Cost: gnetengine.Cost()}, true
}
