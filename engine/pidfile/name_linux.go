package pidfile

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// processName is the base name of the process's executable.
func processName(pid int) (string, error) {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err == nil {
		return filepath.Base(strings.TrimSuffix(exe, " (deleted)")), nil
	}
	// Another user's process: /proc/PID/exe is unreadable, comm is not.
	comm, err2 := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err2 != nil {
		return "", err
	}
	return strings.TrimSpace(string(comm)), nil
}

// isZombie reports whether pid has exited and waits to be reaped by its
// parent (state Z in /proc/PID/stat).
func isZombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parentheses
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
