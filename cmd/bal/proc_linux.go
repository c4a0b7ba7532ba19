package main

import (
	"os"
	"strconv"
	"strings"
)

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
