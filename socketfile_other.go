//go:build !linux

package secnet

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// restrictBeforeBind: outside Linux, bind ignores the mode of the socket,
// so the file could not be created closed to others.
func restrictBeforeBind(c syscall.RawConn, mode os.FileMode) error {
	return fmt.Errorf("setting the Mode, Owner and Group of a socket file on %s: %w", runtime.GOOS, ErrUnsupported)
}

func secureSocketFile(path string, mode os.FileMode, uid, gid int) (sockID, error) {
	return sockID{}, fmt.Errorf("setting the Mode, Owner and Group of a socket file on %s: %w", runtime.GOOS, ErrUnsupported)
}

func defaultSocketMode() (os.FileMode, error) {
	return 0, fmt.Errorf("reading the umask on %s: %w", runtime.GOOS, ErrUnsupported)
}

type accessKind int

const (
	accessSearch accessKind = iota
	accessWrite
)

// canAccess is not implemented outside Linux: the error names the
// directory the socket is created in.
func canAccess(dir string, k accessKind) bool { return true }
