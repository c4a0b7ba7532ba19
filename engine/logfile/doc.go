// Package logfile is the daemon's log file: opened for appending, created
// 0640, never through a symlink, a FIFO or a hard link, and reopened in place
// on demand (SIGUSR1 after logrotate has renamed it). Writes are serialised,
// so one slog handler can write to it from many goroutines, and a reopen
// never loses or splits a line. DupTo points another descriptor (the
// daemon's stderr) at the current file, so crash reports land in the log.
package logfile
