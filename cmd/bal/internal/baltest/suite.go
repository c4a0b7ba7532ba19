package baltest

import (
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// What a black-box suite runs: on which engines, and in which variant.

// SoakEnv, when set (make soak sets it), runs the long tests; without it
// they are skipped so that `make test` stays fast.
const SoakEnv = "BAL_SOAK"

// Soak skips t unless the long tests were asked for.
func Soak(t testing.TB) {
	t.Helper()
	if !Soaking() {
		t.Skipf("long test: run it with `make soak` (%s=1)", SoakEnv)
	}
}

// Soaking reports whether the long variants were asked for (make soak),
// without skipping anything.
func Soaking() bool { return os.Getenv(SoakEnv) != "" }

// Pick returns fast in a normal run and long under make soak.
func Pick[T any](fast, long T) T {
	if Soaking() {
		return long
	}
	return fast
}

// Engines are the engines data-path tests run against here.
func Engines() []string {
	if runtime.GOOS == "linux" {
		return []string{"gnet", "std"}
	}
	return []string{"std"}
}

// ForEngine runs fn as one subtest per engine, in parallel.
func ForEngine(t *testing.T, fn func(t *testing.T, eng string)) {
	for _, eng := range Engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			fn(t, eng)
		})
	}
}

// IsReset reports whether err says the peer reset the connection (or a
// write hit the reset: EPIPE).
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Number reads a number from a decoded JSON document (bal status --json)
// by its path of keys; 0 when absent or not a number.
func Number(doc map[string]any, keys ...string) float64 {
	var v any = doc
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	f, _ := v.(float64)
	return f
}
