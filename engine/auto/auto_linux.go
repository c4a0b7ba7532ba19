//go:build linux

package auto

import gnetengine "github.com/bal-lb/bal/engine_linux"

var gnetFactory = gnetengine.New
