// Package sdnotify is a tiny client of systemd's readiness protocol
// (sd_notify(3)): it sends state lines such as READY=1, RELOADING=1 and
// STOPPING=1 as one datagram to the unix socket named by $NOTIFY_SOCKET. It
// has no dependency and does nothing when $NOTIFY_SOCKET is unset, so
// callers can notify unconditionally.
package sdnotify
