package tlshello

import "encoding/binary"

// Record layer (RFC 8446 §5.1).
const (
	RecordTypeHandshake = 22      // ContentType handshake
	RecordVersionMajor  = 3       // first byte of every legacy_record_version (SSL 3.0 … TLS 1.3)
	RecordHeaderLen     = 5       // type, legacy_record_version, length
	MaxRecordPayload    = 1 << 14 // the longest TLSPlaintext fragment allowed
)

// Handshake layer (RFC 8446 §4).
const (
	HandshakeTypeClientHello = 1
	HandshakeHeaderLen       = 4 // msg_type, 3-byte length

	// minClientHelloBody is the shortest body that holds every fixed field:
	// legacy_version(2) random(32) session_id(1+0) cipher_suites(2+2)
	// compression_methods(1+1), with the extensions block omitted.
	minClientHelloBody = 2 + 32 + 1 + 2 + 2 + 1 + 1
)

// Extensions and names (RFC 8446 §4.2, RFC 6066 §3, RFC 7301 §3.1).
const (
	ExtensionServerName = 0
	ExtensionALPN       = 16
	NameTypeHostName    = 0
	MaxNameLen          = 255 // longest host_name accepted
	maxLabelLen         = 63
	maxSessionIDLen     = 32
)

// MaxHello bounds the bytes a hello may take on the wire, record headers
// included: Hello.Len is never above it. A record or handshake header that
// announces a hello which cannot end within the first MaxHello bytes makes
// Parse return TooLarge at once, so a caller never needs a larger buffer.
const MaxHello = 16 << 10

// Status is what Parse decided about the bytes it was given.
type Status uint8

const (
	// NeedMore: the bytes are a valid prefix of a hello; read more and call
	// Parse again with everything read so far.
	NeedMore Status = iota
	// Done: a complete hello; Hello is filled in. Hello.SNI is empty when the
	// client sent no server_name extension.
	Done
	// NotTLS: the first bytes are not a TLS handshake record.
	NotTLS
	// Malformed: the bytes start like a TLS handshake record but do not hold
	// a well-formed ClientHello.
	Malformed
	// TooLarge: a header announces a hello longer than MaxHello.
	TooLarge
)

var statusNames = [...]string{
	NeedMore:  "need_more",
	Done:      "done",
	NotTLS:    "not_tls",
	Malformed: "malformed",
	TooLarge:  "too_large",
}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// Hello is what Parse read from a complete ClientHello.
type Hello struct {
	// SNI is the host_name of the server_name extension as sent (see
	// NormalizeName), or "" when the extension is absent.
	SNI string
	// ALPN lists the offered protocol names in the client's order; nil when
	// the extension is absent.
	ALPN []string
	// Len is how many leading bytes of the input the hello's records take.
	Len int
	// Reason says in a few words why the status is NotTLS, Malformed or
	// TooLarge (for a debug log); empty otherwise.
	Reason string
}

// Parse inspects b, every byte read from the client so far, for a TLS
// ClientHello. It returns Done with the hello's fields, NeedMore while b is a
// valid but incomplete prefix, or one of NotTLS, Malformed, TooLarge, each
// decided as soon as the bytes seen allow it. Bytes after the hello's last
// record are never looked at. Parse does not keep b.
func Parse(b []byte) (Hello, Status) {
	if len(b) == 0 {
		return Hello{}, NeedMore
	}
	if b[0] != RecordTypeHandshake {
		return fail(NotTLS, "first byte is not a TLS handshake record")
	}
	if len(b) > 1 && b[1] != RecordVersionMajor {
		return fail(NotTLS, "record version is not 3.x")
	}

	var (
		hdr     [HandshakeHeaderLen]byte // the handshake header, gathered across records
		hdrN    int
		msgLen  = -1 // handshake header + body, once hdr is complete
		payload int  // handshake bytes the records seen so far announce
		records int
		off     int
	)
	for {
		if off >= len(b) {
			return Hello{}, NeedMore
		}
		if off > 0 {
			if b[off] != RecordTypeHandshake {
				return fail(Malformed, "a non-handshake record inside the hello")
			}
			if off+1 < len(b) && b[off+1] != RecordVersionMajor {
				return fail(Malformed, "record version is not 3.x")
			}
		}
		if off+RecordHeaderLen > len(b) {
			return Hello{}, NeedMore
		}
		n := int(binary.BigEndian.Uint16(b[off+3:]))
		if n == 0 {
			return fail(Malformed, "empty handshake record")
		}
		end := off + RecordHeaderLen + n
		if n > MaxRecordPayload || end > MaxHello {
			return fail(TooLarge, "a record ends past MaxHello")
		}
		records++
		frag := b[off+RecordHeaderLen : min(end, len(b))]
		for i := 0; hdrN < HandshakeHeaderLen && i < len(frag); i++ {
			hdr[hdrN] = frag[i]
			hdrN++
		}
		if hdrN > 0 && hdr[0] != HandshakeTypeClientHello {
			return fail(Malformed, "first handshake message is not a ClientHello")
		}
		if hdrN == HandshakeHeaderLen && msgLen < 0 {
			body := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
			if body > MaxHello {
				return fail(TooLarge, "ClientHello length exceeds MaxHello")
			}
			if body < minClientHelloBody {
				return fail(Malformed, "ClientHello shorter than its fixed fields")
			}
			msgLen = HandshakeHeaderLen + body
		}
		payload += n
		if msgLen >= 0 {
			if payload > msgLen {
				return fail(Malformed, "bytes after the ClientHello in its last record")
			}
			// The rest of the message needs at least one more record.
			if payload < msgLen && end+RecordHeaderLen+msgLen-payload > MaxHello {
				return fail(TooLarge, "the ClientHello cannot end within MaxHello")
			}
		}
		if end > len(b) {
			return Hello{}, NeedMore
		}
		off = end
		if payload != msgLen {
			continue
		}
		var msg []byte
		if records == 1 {
			msg = b[RecordHeaderLen:end]
		} else {
			msg = reassemble(b[:end], msgLen)
		}
		h, reason := parseClientHello(msg[HandshakeHeaderLen:])
		if reason != "" {
			return fail(Malformed, reason)
		}
		h.Len = end
		return h, Done
	}
}

func fail(s Status, reason string) (Hello, Status) {
	return Hello{Reason: reason}, s
}

// reassemble concatenates the payloads of the complete records in b, whose
// framing Parse has already checked.
func reassemble(b []byte, msgLen int) []byte {
	msg := make([]byte, 0, msgLen)
	for len(b) >= RecordHeaderLen {
		n := int(binary.BigEndian.Uint16(b[3:]))
		msg = append(msg, b[RecordHeaderLen:RecordHeaderLen+n]...)
		b = b[RecordHeaderLen+n:]
	}
	return msg
}

// reader walks a byte slice; every read checks its bounds and a failed read
// leaves ok false and returns zero values.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.ok = false
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return int(v)
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.ok = false
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return int(v)
}

func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.ok = false
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// parseClientHello reads a ClientHello body (RFC 8446 §4.1.2). It returns a
// non-empty reason when the body is malformed.
func parseClientHello(body []byte) (Hello, string) {
	r := reader{b: body, ok: true}
	r.bytes(2 + 32) // legacy_version (not checked: servers negotiate it), random
	if sid := r.u8(); sid > maxSessionIDLen {
		return Hello{}, "legacy_session_id longer than 32 bytes"
	} else {
		r.bytes(sid)
	}
	if n := r.u16(); n < 2 || n%2 != 0 {
		return Hello{}, "bad cipher_suites length"
	} else {
		r.bytes(n)
	}
	if n := r.u8(); n < 1 {
		return Hello{}, "empty legacy_compression_methods"
	} else {
		r.bytes(n)
	}
	if !r.ok {
		return Hello{}, "ClientHello fixed fields truncated"
	}
	if len(r.b) == 0 {
		return Hello{}, "" // no extensions block (allowed before TLS 1.3)
	}
	if n := r.u16(); !r.ok || n != len(r.b) {
		return Hello{}, "extensions length does not match the ClientHello length"
	}
	var sni, alpn []byte
	var haveSNI, haveALPN bool
	for len(r.b) > 0 {
		typ := r.u16()
		data := r.bytes(r.u16())
		if !r.ok {
			return Hello{}, "extension truncated"
		}
		switch typ {
		case ExtensionServerName:
			if haveSNI {
				return Hello{}, "duplicate server_name extension"
			}
			haveSNI = true
			var reason string
			if sni, reason = parseServerName(data); reason != "" {
				return Hello{}, reason
			}
		case ExtensionALPN:
			if haveALPN {
				return Hello{}, "duplicate ALPN extension"
			}
			haveALPN = true
			var reason string
			if alpn, reason = checkALPN(data); reason != "" {
				return Hello{}, reason
			}
		}
	}
	return newHello(sni, alpn), ""
}

// parseServerName reads a ServerNameList (RFC 6066 §3) and returns its
// host_name. Entries of other name types are skipped, read with the 2-byte
// length every defined type uses.
func parseServerName(data []byte) ([]byte, string) {
	r := reader{b: data, ok: true}
	n := r.u16()
	if !r.ok || n != len(r.b) || n == 0 {
		return nil, "bad server_name list length"
	}
	var host []byte
	for len(r.b) > 0 {
		typ := r.u8()
		name := r.bytes(r.u16())
		if !r.ok {
			return nil, "server_name entry truncated"
		}
		if typ != NameTypeHostName {
			continue
		}
		if host != nil {
			return nil, "two host_name entries in server_name"
		}
		if !validName(name) {
			return nil, "host_name is not a valid DNS name"
		}
		host = name
	}
	return host, ""
}

// checkALPN checks a ProtocolNameList (RFC 7301 §3.1) and returns it without
// its length prefix.
func checkALPN(data []byte) ([]byte, string) {
	r := reader{b: data, ok: true}
	n := r.u16()
	if !r.ok || n != len(r.b) || n == 0 {
		return nil, "bad ALPN list length"
	}
	list := r.b
	for len(r.b) > 0 {
		p := r.bytes(r.u8())
		if !r.ok {
			return nil, "ALPN protocol name truncated"
		}
		if len(p) == 0 {
			return nil, "empty ALPN protocol name"
		}
	}
	return list, ""
}

// newHello builds the result with one allocation for all the names' bytes
// and one for the ALPN slice. alpn is a checked ProtocolNameList body.
func newHello(sni, alpn []byte) Hello {
	var h Hello
	if len(sni)+len(alpn) == 0 {
		return h
	}
	all := string(sni) + string(alpn)
	h.SNI = all[:len(sni)]
	if len(alpn) == 0 {
		return h
	}
	count := 0
	for i := 0; i < len(alpn); i += 1 + int(alpn[i]) {
		count++
	}
	h.ALPN = make([]string, 0, count)
	for i := len(sni); i < len(all); {
		n := int(all[i])
		h.ALPN = append(h.ALPN, all[i+1:i+1+n])
		i += 1 + n
	}
	return h
}

// validName reports whether name is a DNS host name of at most MaxNameLen
// bytes: dot-separated labels of 1 to 63 letters, digits, '-' or '_', with at
// most one trailing dot.
func validName[T string | []byte](name T) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	label := 0
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			label++
			if label > maxLabelLen {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// ValidName reports whether s is a server name Parse accepts: dot-separated
// labels of 1 to 63 ASCII letters, digits, '-' or '_', at most MaxNameLen
// bytes in all, with at most one trailing dot.
func ValidName(s string) bool {
	return validName(s)
}

// NormalizeName returns name in the form routes are matched against: ASCII
// letters lowercased and one trailing dot removed. It allocates only when it
// changes a letter.
func NormalizeName(name string) string {
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}
