package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// $BAL_HOME holds the pid file, the control socket and the daemon log. bal
// only writes there when nobody else can have planted anything in it: the
// directory (a symlink's target included) must belong to the user bal runs
// as and be writable by nobody else, and a symlink standing for it must
// belong to that user or root. Files in it are never followed (pidfile,
// logfile and control each open or replace their own file without
// following links); `bal doctor` reports every unsafe state.

// ErrUnsafeHome: $BAL_HOME is not safe to write into; bal start refuses.
var ErrUnsafeHome = errors.New("unsafe BAL_HOME")

// homeIssue is one unsafe (critical) or doubtful (warn) state of $BAL_HOME
// or of a file in it.
type homeIssue struct {
	level   string // checkWarn | checkCritical
	summary string
	hint    string
}

// checkHomeDir inspects $BAL_HOME for a bal running as this user. It
// returns nil when the directory is safe or does not exist yet (bal creates
// it 0700). With inspecting set (bal doctor), root may look at another
// user's home: the owner is then not held against it.
func checkHomeDir(home string, inspecting bool) *homeIssue {
	uid := os.Geteuid()
	fi, err := os.Lstat(home)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &homeIssue{checkCritical, fmt.Sprintf("cannot inspect %s: %v", home, err), "check BAL_HOME"}
	}
	var link *homeIssue
	if fi.Mode()&fs.ModeSymlink != 0 {
		if owner := ownerOf(fi); owner != uid && owner != 0 {
			return &homeIssue{checkCritical,
				fmt.Sprintf("%s is a symlink owned by uid %d (not this user, uid %d, nor root): someone else decides where bal writes", home, owner, uid),
				"remove the link and point BAL_HOME at a directory of your own, mode 0700"}
		}
		target, _ := filepath.EvalSymlinks(home)
		if fi, err = os.Stat(home); err != nil {
			return &homeIssue{checkCritical, fmt.Sprintf("%s is a symlink that cannot be followed: %v", home, err), "point BAL_HOME at a real directory"}
		}
		link = &homeIssue{checkWarn, fmt.Sprintf("%s is a symlink to %s", home, target), "point BAL_HOME at the real directory"}
	}
	switch {
	case !fi.IsDir():
		return &homeIssue{checkCritical, home + " is not a directory", "point BAL_HOME at a directory, mode 0700"}
	case ownerOf(fi) != uid && !(inspecting && uid == 0):
		return &homeIssue{checkCritical, fmt.Sprintf("%s is owned by uid %d, not by this user (uid %d)", home, ownerOf(fi), uid),
			"run bal as the user that owns it, or use a BAL_HOME of your own, mode 0700"}
	case fi.Mode().Perm()&0o022 != 0:
		return &homeIssue{checkCritical, fmt.Sprintf("%s is writable by others (mode %04o)", home, fi.Mode().Perm()), "chmod 700 " + home}
	}
	return link
}

// checkHomeFile inspects a file bal creates in $BAL_HOME (want: 0 for a
// regular file, fs.ModeSocket for the control socket); it must belong to
// the owner of $BAL_HOME. A missing file is fine (nil).
func checkHomeFile(path string, want fs.FileMode) *homeIssue {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &homeIssue{checkCritical, fmt.Sprintf("cannot inspect %s: %v", path, err), "check its permissions"}
	}
	kind := map[fs.FileMode]string{0: "a regular file", fs.ModeSocket: "a socket"}[want]
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return &homeIssue{checkCritical, fmt.Sprintf("%s is a symlink; bal never follows it and will not start until it is removed", path), "remove " + path}
	case fi.Mode().Type() != want:
		return &homeIssue{checkCritical, fmt.Sprintf("%s is not %s (%s); bal will not start until it is removed", path, kind, fi.Mode().Type()), "remove " + path}
	case want == 0 && linkCount(fi) > 1:
		return &homeIssue{checkCritical, fmt.Sprintf("%s has %d hard links: it is also another file, which bal never writes through", path, linkCount(fi)), "remove " + path}
	}
	if dir, err := os.Stat(filepath.Dir(path)); err == nil && ownerOf(fi) != ownerOf(dir) {
		return &homeIssue{checkCritical, fmt.Sprintf("%s is owned by uid %d, not by the owner of %s (uid %d)", path, ownerOf(fi), filepath.Dir(path), ownerOf(dir)), "remove " + path}
	}
	return nil
}

// ensureHome creates $BAL_HOME (0700) when it does not exist, and refuses
// (ErrUnsafeHome) one that others could have planted files in.
func ensureHome(home string) error {
	if is := checkHomeDir(home, false); is != nil && is.level == checkCritical {
		return fmt.Errorf("%w: %s (%s)", ErrUnsafeHome, is.summary, is.hint)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", home, err)
	}
	if is := checkHomeDir(home, false); is != nil && is.level == checkCritical {
		return fmt.Errorf("%w: %s (%s)", ErrUnsafeHome, is.summary, is.hint)
	}
	return nil
}

func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return os.Geteuid()
}

func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
