package adminstate

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzParse: any bytes either parse to a valid state or fail with
// ErrCorrupt; a parsed state encodes and parses back to itself.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"backends":[]}`))
	f.Add([]byte(`{"version":1,"backends":[{"service":"web","pool":"default","backend":"[::1]:80","state":"maint"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Parse(data)
		if err != nil {
			return
		}
		for _, e := range st.Backends {
			if _, err := BackendKey(e.Backend); err != nil {
				t.Fatalf("Parse accepted backend %q: %v", e.Backend, err)
			}
		}
		out, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("a parsed state does not parse again: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(st, again) {
			t.Fatalf("round trip changed the state:\n%+v\n%+v", st, again)
		}
	})
}

// FuzzBackendKey: a key is stable (the key of a key is itself).
func FuzzBackendKey(f *testing.F) {
	for _, s := range []string{"10.0.0.1:80", "[::1]:80", "::1:80", "Host.Example:443", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := BackendKey(s)
		if err != nil {
			return
		}
		k2, err := BackendKey(k)
		if err != nil || k2 != k {
			t.Fatalf("BackendKey(%q) = %q, whose key is %q (%v)", s, k, k2, err)
		}
	})
}
