// Package adminstate is bal's state file, $BAL_HOME/state.json: the admin
// states (drain, maint) an operator set on backends, so that they survive
// restarts (docs/operations.md#files). The file is written atomically (a
// temporary file created with O_EXCL|O_NOFOLLOW, fsynced, renamed over the
// old one), never through a symlink; a file that is a symlink, not a
// regular file, too large or not a valid document is an error the caller
// logs and ignores. It also normalises a backend named on the command line
// ("[::1]:80", "::1:80") to the identity the config uses.
package adminstate
