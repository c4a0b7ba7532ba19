package stdengine

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when any test leaves a goroutine behind
// (research test 30's gate; the conformance suite also checks each test).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
