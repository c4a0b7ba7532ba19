//go:build !linux

package auto

import "github.com/bal-lb/bal/engine"

var gnetFactory engine.Factory
