package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultFile is the config file bal start writes when none exists
// (docs/configuration.md, Default file). It passes bal check --strict.
const DefaultFile = `# bal configuration, written by 'bal start' because no config file existed.
# Check it with 'bal check'; apply changes to a running bal with 'bal graceful'.

# simple: only the keys in this file matter; timeouts, health checks and
# limits are auto-tuned from the number of backends. Set "advanced" and add a
# runtime: block to tune them key by key (see docs/configuration.md).
mode: "simple"

# TCP port bal listens on.
port: 9295

# Address bal listens on. 127.0.0.1 accepts clients from this machine only;
# use "0.0.0.0" (or "::") to listen on all interfaces.
bind_address: "127.0.0.1"

# round_robin, least_connections, random_two or source_hash.
method: "round_robin"

# debug, info, warn or error.
log_level: "info"

# Where connections go: host (IP address or name) and port, plus an optional
# weight from 1 to 256 (default 1). These two are the sample backends:
# 'npm run start:all' in bal's sample/ folder starts them.
backends:
  - host: "127.0.0.1"
    port: 9000
  - host: "127.0.0.1"
    port: 9100
`

// WriteDefault writes DefaultFile to home/config.yaml and returns its path.
// home is created with mode 0700 when missing (an existing directory's mode
// is left alone). The file is created with mode 0600, never overwritten
// (O_EXCL: an existing file gives an error matching fs.ErrExist) and never
// written through a symlink (O_NOFOLLOW).
func WriteDefault(home string) (string, error) {
	home, err := filepath.Abs(home)
	if err != nil {
		return "", fmt.Errorf("bal home %q: %w", home, err)
	}
	if _, err := os.Lstat(home); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(home, 0o700); err != nil {
			return "", fmt.Errorf("create bal home: %w", err)
		}
		// MkdirAll's mode passes through the umask, which can only remove
		// bits; set it exactly on the directory we created.
		if err := os.Chmod(home, 0o700); err != nil {
			return "", fmt.Errorf("create bal home: %w", err)
		}
	}
	path := filepath.Join(home, FileName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", fmt.Errorf("write default config: %w", err)
	}
	werr := f.Chmod(0o600)
	if werr == nil {
		_, werr = f.WriteString(DefaultFile)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("write default config %s: %w", path, werr)
	}
	return path, nil
}
