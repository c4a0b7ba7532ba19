//go:build linux

package gnetengine_test

import (
	"testing"

	"github.com/bal-lb/bal/engine/enginetest"
	gnetengine "github.com/bal-lb/bal/engine_linux"
)

// TestConformance runs the shared engine suite against the gnet engine.
func TestConformance(t *testing.T) { enginetest.Run(t, gnetengine.New) }
