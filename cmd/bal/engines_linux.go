package main

import (
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/server"
	gnetengine "github.com/bal-lb/bal/engine_linux"
)

// gnetEngine is the gnet + splice engine, Linux only.
func gnetEngine() (server.Engine, bool) {
	return server.Engine{Name: config.EngineGnet, New: gnetengine.New, Cost: gnetengine.Cost()}, true
}
