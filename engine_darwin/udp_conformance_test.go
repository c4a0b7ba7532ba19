package stdengine

import (
	"testing"

	"github.com/bal-lb/bal/engine/enginetest"
)

func TestUDPConformance(t *testing.T) { enginetest.RunUDP(t, NewUDP) }
