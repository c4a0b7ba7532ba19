package logfile

import "syscall"

// dup2 makes newfd a copy of oldfd (dup3 without O_CLOEXEC: newfd survives exec like stderr does).
func dup2(oldfd, newfd int) error { return syscall.Dup3(oldfd, newfd, 0) }
