package balance

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

var fourKeys = []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "app-d.internal:8080"}

// mapping returns, for clients 0..n-1, the key of the backend s picks with
// every backend eligible.
func mapping(s *SourceHash, keys []string, n int) []string {
	v := newView(len(keys))
	out := make([]string, n)
	for k := range n {
		i, ok := s.Pick(v, clientHash(k))
		if !ok {
			return nil
		}
		out[k] = keys[i]
	}
	return out
}

func TestSourceHashIndependentInstancesAgree(t *testing.T) {
	a := mapping(NewSourceHash(fourKeys, []int{1, 2, 1, 1}), fourKeys, 1000)
	b := mapping(NewSourceHash(slices.Clone(fourKeys), []int{1, 2, 1, 1}), fourKeys, 1000)
	if !slices.Equal(a, b) {
		t.Fatal("two instances built from the same list map clients differently")
	}
	// The config file's order does not matter either.
	rev := slices.Clone(fourKeys)
	slices.Reverse(rev)
	if c := mapping(NewSourceHash(rev, []int{1, 1, 2, 1}), rev, 1000); !slices.Equal(a, c) {
		t.Fatal("reordering the backend list remapped clients")
	}
}

// TestSourceHashAcrossProcesses runs this test binary again as a separate
// process and compares its mapping of 1,000 clients with this one's: no
// per-process seed (map order, maphash) may leak into the table.
func TestSourceHashAcrossProcesses(t *testing.T) {
	if os.Getenv("BAL_SOURCEHASH_CHILD") == "1" {
		for _, k := range mapping(NewSourceHash(fourKeys, []int{1, 2, 1, 1}), fourKeys, 1000) {
			fmt.Println(k)
		}
		return
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSourceHashAcrossProcesses$")
	cmd.Env = append(os.Environ(), "BAL_SOURCEHASH_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child process: %v", err)
	}
	var child []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, ":8080") {
			child = append(child, l)
		}
	}
	if want := mapping(NewSourceHash(fourKeys, []int{1, 2, 1, 1}), fourKeys, 1000); !slices.Equal(child, want) {
		t.Fatalf("child process mapped %d clients differently from this process (%d)", len(child), len(want))
	}
}

func TestSourceHashRemovingOneOfFourRemapsFew(t *testing.T) {
	const clients = 1000
	before := mapping(NewSourceHash(fourKeys, nil), fourKeys, clients)
	for drop := range fourKeys {
		keys := slices.Delete(slices.Clone(fourKeys), drop, drop+1)
		after := mapping(NewSourceHash(keys, nil), keys, clients)
		moved, movedOthers := 0, 0
		for k := range clients {
			if before[k] != after[k] {
				moved++
				if before[k] != fourKeys[drop] {
					movedOthers++
				}
			}
		}
		if moved > clients*30/100 {
			t.Errorf("removing %s remapped %d of %d clients (> 30 %%)", fourKeys[drop], moved, clients)
		}
		if movedOthers > clients*3/100 {
			t.Errorf("removing %s moved %d clients of other backends", fourKeys[drop], movedOthers)
		}
	}
}

func TestSourceHashFallsThroughDeterministically(t *testing.T) {
	s := NewSourceHash(fourKeys, nil)
	other := NewSourceHash(fourKeys, nil)
	v := newView(4)
	v.down[2] = true
	spread := make([]int, 4)
	for k := range 4000 {
		h := clientHash(k)
		owner := s.Owner(h)
		i, ok := s.Pick(v, h)
		if !ok || i == 2 {
			t.Fatalf("client %d: picked %d %v with backend 2 down", k, i, ok)
		}
		if owner != 2 && i != owner {
			t.Fatalf("client %d of healthy backend %d moved to %d", k, owner, i)
		}
		if owner == 2 {
			spread[i]++
			// The same client falls through the same way every time, and
			// also in an independent instance.
			if j, _ := other.Pick(v, h); j != i {
				t.Fatalf("client %d fell through to %d and to %d", k, i, j)
			}
			// A retry after that backend failed too goes to a third one.
			v.down[i] = true
			if j, ok := s.Pick(v, h); !ok || j == i || j == 2 {
				t.Fatalf("client %d retry picked %d %v", k, j, ok)
			}
			v.down[i] = false
		}
	}
	total := spread[0] + spread[1] + spread[3]
	for _, i := range []int{0, 1, 3} {
		if spread[i] < total/5 {
			t.Fatalf("clients of the down backend spread %v: backend %d got too few", spread, i)
		}
	}
}

func TestSourceHashTableShares(t *testing.T) {
	s := NewSourceHash(fourKeys, []int{4, 2, 1, 1})
	n := make([]int, 4)
	for _, i := range s.table {
		n[i]++
	}
	m := len(s.table)
	for i, w := range []int{4, 2, 1, 1} {
		want := m * w / 8
		if d := n[i] - want; d < -want/100-1 || d > want/100+1 {
			t.Errorf("backend %d owns %d slots of %d, want %d ± 1 %%", i, n[i], m, want)
		}
	}
}

// TestSourceHashGolden pins the mapping of a few clients, so a change of the
// hash or table construction (which would remap every client during a rolling
// upgrade of several bal instances) does not go unnoticed.
func TestSourceHashGolden(t *testing.T) {
	got := mapping(NewSourceHash(fourKeys, nil), fourKeys, 12)
	want := strings.Fields(goldenMapping)
	if !slices.Equal(got, want) {
		t.Fatalf("mapping changed:\n got %v\nwant %v", got, want)
	}
}

const goldenMapping = `
10.0.0.3:8080 10.0.0.2:8080 10.0.0.2:8080 10.0.0.2:8080
10.0.0.2:8080 10.0.0.1:8080 10.0.0.2:8080 10.0.0.1:8080
10.0.0.1:8080 app-d.internal:8080 10.0.0.2:8080 app-d.internal:8080`
