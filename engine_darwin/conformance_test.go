package stdengine

import (
	"testing"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/enginetest"
)

// suiteOptions: this engine reads PROXY headers and inspects hellos.
var suiteOptions = enginetest.Options{Inspection: true, ProxyIn: true}

func TestConformance(t *testing.T) { enginetest.RunWith(t, New, suiteOptions) }

// TestConformanceBufferCopy runs the suite with the userspace copy that macOS
// uses, so that path is tested on Linux CI as well.
func TestConformanceBufferCopy(t *testing.T) {
	enginetest.RunWith(t, func(o engine.Options, p engine.Policy) (engine.Engine, error) {
		e, err := newEngine(o, p, bufferCopier{})
		if err != nil {
			return nil, err
		}
		return e, nil
	}, suiteOptions)
}
