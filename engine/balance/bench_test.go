package balance

import (
	"fmt"
	"testing"

	"github.com/bal-lb/bal/engine/config"
)

func BenchmarkPick(b *testing.B) {
	keys := make([]string, 8)
	weights := make([]int, 8)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.0.0.%d:8080", i+1)
		weights[i] = 1 + i%3
	}
	for _, m := range []config.Method{config.RoundRobin, config.LeastConnections, config.RandomTwo, config.SourceHash} {
		for _, down := range []int{0, 2} {
			b.Run(fmt.Sprintf("%s/backends=8/down=%d", m, down), func(b *testing.B) {
				bal := New(m, keys, weights)
				v := newView(8)
				for i := range down {
					v.down[i*3] = true
				}
				h := uint64(0x9e3779b97f4a7c15)
				b.ReportAllocs()
				for b.Loop() {
					h += 0x9e3779b97f4a7c15
					i, ok := bal.Pick(v, h)
					if !ok {
						b.Fatal("no pick")
					}
					v.active[i]++
					if v.active[i] > 64 {
						v.active[i] = 0
					}
				}
			})
		}
	}
}

func BenchmarkHashAddr(b *testing.B) {
	b.ReportAllocs()
	k := 0
	for b.Loop() {
		k++
		_ = clientHash(k)
	}
}
