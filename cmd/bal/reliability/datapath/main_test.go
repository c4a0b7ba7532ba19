//go:build linux

package datapath

import (
	"testing"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

func TestMain(m *testing.M) { baltest.MainLong(m) }
