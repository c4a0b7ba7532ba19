//go:build linux

package datapath

import (
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// TestConnConformance is research test 19: golang.org/x/net/nettest's
// TestConn on pipes made of a client connection through bal and the
// backend's accepted connection (both orientations: the client as c1 and
// as c2). The std engine runs as a race-built bal, the gnet engine as the
// normal build; a run is clean when every subtest passed, and bal must
// report no data race.
func TestConnConformance(t *testing.T) {
	runs := baltest.Pick(2, 20)
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) {
			race := eng == "std"
			var r *rig
			if race {
				r = newRig(t, eng, rigOptions{
					runtime: []string{"connection_idle_timeout_ms: 30000"},
					extra:   []baltest.Option{baltest.Binary(baltest.RaceBinary(t)), baltest.RaceEnv()},
				})
			} else {
				r = newRig(t, eng, rigOptions{runtime: []string{"connection_idle_timeout_ms: 30000"}})
			}
			clean := 0
			for i := range runs {
				ok := true
				for _, clientFirst := range []bool{true, false} {
					name := fmt.Sprintf("run%d/client-is-c1", i)
					if !clientFirst {
						name = fmt.Sprintf("run%d/backend-is-c1", i)
					}
					ok = t.Run(name, func(t *testing.T) {
						nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
							c, b, err := r.pipe()
							if err != nil {
								return nil, nil, nil, err
							}
							stop = func() { c.Close(); b.Close() }
							if clientFirst {
								return c, b, stop, nil
							}
							return b, c, stop, nil
						})
					}) && ok
				}
				r.forget()
				if ok {
					clean++
				}
			}
			races := 0
			build := "normal build"
			if race {
				build = "race-built bal"
				code := r.bal.Stop(10 * time.Second)
				races = r.bal.RaceReports()
				if code == 66 && races == 0 {
					races = 1 // the race runtime's exit code says so
				}
			}
			baltest.Record(t, 19, fmt.Sprintf("%s (%s): %d/%d clean nettest.TestConn runs (each both orientations: 1 MiB basic I/O, ping-pong, racy read/write, deadlines, close); %d races in bal",
				eng, build, clean, runs, races), clean == runs && races == 0)
		})
	}
}
