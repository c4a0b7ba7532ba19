//go:build linux

package gnetengine

import (
	"github.com/panjf2000/gnet/v2/pkg/netpoll"

	"github.com/bal-lb/bal/engine"
)

// Pair states.
const (
	stConnecting uint8 = iota // non-blocking connect in progress
	stHeader                  // writing the PROXY header
	stRelay                   // splicing both ways
	stClosed
)

// Epoll interest masks.
const (
	evRead  uint32 = netpoll.ReadEvents
	evWrite uint32 = netpoll.WriteEvents
)

// relayBudget bounds the bytes one direction moves per event, so that one
// fast pair cannot starve the others of its loop (level-triggered epoll
// reports the source again).
const relayBudget = 1 << 20

// dir is one direction of a pair: src → pipe → dst.
type dir struct {
	src, dst int
	pipe     pipe // valid while held (buffered > 0, or during a pump)
	held     bool
	buffered int  // bytes in the pipe
	eof      bool // src returned EOF
	shut     bool // shutdown(dst, SHUT_WR) done
}

// reading: the direction wants EPOLLIN on its source.
func (d *dir) reading() bool { return !d.eof && d.buffered == 0 }

// done: EOF seen, everything delivered, FIN forwarded.
func (d *dir) done() bool { return d.shut }

// pair is one proxied connection: a client socket and a backend socket.
type pair struct {
	l    *loop
	info engine.ConnInfo

	cfd, bfd     int
	cpa, bpa     netpoll.PollAttachment
	cmask, bmask uint32
	state        uint8

	attempt   int
	target    engine.Target
	dialStart int64

	connectTimeout, idleTimeout int64
	proxy                       engine.ProxyProtocol
	hdr                         []byte // PROXY header bytes still to write

	up, down   dir // client→backend, backend→client
	bytesIn    int64
	bytesOut   int64
	lastActive int64

	deadline int64
	tidx     int
}

func newPair() *pair {
	return &pair{cfd: -1, bfd: -1, tidx: -1}
}
