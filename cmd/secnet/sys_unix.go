//go:build unix

package main

import (
	"io/fs"
	"syscall"
)

// fileOwner returns the group and the user that own a file.
func fileOwner(fi fs.FileInfo) (gid, uid int) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1
	}
	return int(st.Gid), int(st.Uid)
}

// signalZero reports whether a process with this pid exists, where there
// is no /proc to look in.
func signalZero(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
