// Package tlshello reads the server name (SNI) and the offered application
// protocols (ALPN) out of the TLS ClientHello a client sends first, so that a
// service can pick a route before it connects a backend. The bytes are only
// looked at, never changed or consumed: the caller forwards them to the chosen
// backend unchanged and TLS still ends there.
//
// Parse is a pure function over the bytes read so far. The caller appends
// what arrives to its own buffer and calls Parse again while it returns
// NeedMore; Parse keeps no state, does no I/O and reads nothing past the
// slice, so both engines (an event loop that owns its input buffer and a
// goroutine per connection) share it. Its work is linear in len(b) and b never
// needs to grow past MaxHello: with MaxHello bytes or more Parse always
// returns a final Status.
//
// A hello may be cut into any number of TLS records (RFC 8446 §5.1) and TCP
// segments; the handshake message is reassembled from the records' payloads.
// Only the framing of the hello and the server_name (RFC 6066 §3) and
// application_layer_protocol_negotiation (RFC 7301 §3.1) extensions are
// checked; other extensions are skipped by their lengths.
//
// The server name is returned as the client sent it. Route matching compares
// names case-insensitively and ignores one trailing dot; NormalizeName gives
// that form.
package tlshello
