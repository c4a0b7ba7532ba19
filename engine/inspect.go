package engine

// MaxInspect is the most bytes an engine reads from a client before it
// chooses a backend: a TLS ClientHello is parsed from at most this many
// bytes (engine/tlshello.MaxHello), and a PROXY header (at most
// engine/proxyproto.MaxV2Len) precedes it. Everything read is sent to the
// backend first, unchanged.
const MaxInspect = 16<<10 + 4096

// InspectResult is what reading a client's ClientHello found; engines fill
// it in ConnInfo.Hello before calling Policy.Route. Its String is the
// `result` label of bal_inspect_results_total.
type InspectResult uint8

// Inspection results.
const (
	// InspectNone: the service does not inspect (the zero value).
	InspectNone InspectResult = iota
	// InspectSNI: a ClientHello with a server name.
	InspectSNI
	// InspectNoSNI: a ClientHello without a server name.
	InspectNoSNI
	// InspectNotTLS: the first bytes are not a TLS handshake.
	InspectNotTLS
	// InspectMalformed: the bytes start like TLS but do not parse.
	InspectMalformed
	// InspectTimeout: the hello was not complete within the inspect timeout.
	InspectTimeout
	// InspectTooLarge: the hello announced or took more than the bound.
	InspectTooLarge
	// InspectClosed: the client closed or reset during inspection.
	InspectClosed
)

var inspectNames = [...]string{
	InspectNone:      "none",
	InspectSNI:       "sni",
	InspectNoSNI:     "no_sni",
	InspectNotTLS:    "not_tls",
	InspectMalformed: "malformed",
	InspectTimeout:   "timeout",
	InspectTooLarge:  "too_large",
	InspectClosed:    "closed",
}

// String returns the result as counted in status and metrics.
func (r InspectResult) String() string {
	if int(r) < len(inspectNames) {
		return inspectNames[r]
	}
	return "unknown"
}

// InspectResults returns every result an inspection can have (InspectNone
// excluded), in the order status and metrics list them.
func InspectResults() []InspectResult {
	return []InspectResult{InspectSNI, InspectNoSNI, InspectNotTLS, InspectMalformed, InspectTimeout, InspectTooLarge, InspectClosed}
}

// Hello is what inspection found in a client's first bytes. SNI is the
// server name as the client sent it (route matching normalises it); ALPN
// lists the protocols it offered. Both are empty unless Result is
// InspectSNI or InspectNoSNI.
type Hello struct {
	Result InspectResult
	SNI    string
	ALPN   []string
}

// ProxyIn selects the PROXY header a service reads from upstream balancers.
type ProxyIn uint8

// Inbound PROXY header modes.
const (
	ProxyInOff ProxyIn = iota
	ProxyInV1
	ProxyInV2
	ProxyInAny
)
