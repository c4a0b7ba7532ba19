//go:build !linux

package main

import "github.com/bal-lb/bal/engine/server"

// gnetEngine: the gnet engine exists on Linux only.
func gnetEngine() (server.Engine, bool) { return server.Engine{}, false }
