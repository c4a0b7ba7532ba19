package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FileName is the config file's name in $BAL_HOME and /etc/bal.
const FileName = "config.yaml"

// etcPath is the system-wide config file, second in the lookup order; a
// variable so tests can point it elsewhere.
var etcPath = "/etc/bal/config.yaml"

// Load reads and parses the config file at path. The Snapshot's Path is the
// file's absolute path. A missing file gives an error matching ErrNotFound
// (and fs.ErrNotExist); an invalid one an *Error matching ErrInvalid; any
// other error (permissions, a directory) matches neither.
func Load(path string) (*Snapshot, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotFound, abs, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("config file %s is a directory", abs)
	}
	// Read one byte more than Parse accepts so it can report the size.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return Parse(data, abs)
}

// Home is bal's directory: $BAL_HOME when set, else ~/.bal, as an absolute
// path. It does not create it.
func Home() (string, error) {
	if h := os.Getenv("BAL_HOME"); h != "" {
		abs, err := filepath.Abs(h)
		if err != nil {
			return "", fmt.Errorf("BAL_HOME %q: %w", h, err)
		}
		return abs, nil
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cannot find bal's home directory (set BAL_HOME): %w", err)
	}
	return filepath.Join(u, ".bal"), nil
}

// Resolve finds the config file the same way for every command
// (docs/configuration.md, File lookup):
// a non-empty flagPath made absolute against the working directory; else
// $BAL_HOME/config.yaml (~/.bal/config.yaml) when it exists; else
// /etc/bal/config.yaml when it exists; else the $BAL_HOME path, which does
// not exist (callers report it or, for bal start, write the default there).
func Resolve(flagPath string) (string, error) {
	if flagPath != "" {
		abs, err := filepath.Abs(flagPath)
		if err != nil {
			return "", fmt.Errorf("config path %q: %w", flagPath, err)
		}
		return abs, nil
	}
	home, herr := Home()
	if herr == nil {
		p := filepath.Join(home, FileName)
		if exists(p) {
			return p, nil
		}
		if exists(etcPath) {
			return etcPath, nil
		}
		return p, nil
	}
	if exists(etcPath) {
		return etcPath, nil
	}
	return "", herr
}

// exists is true when something is at path, even if it cannot be read
// (Load then reports why).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
