package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a socket address holds (sun_path less
// its terminating NUL): a socket file at a longer path can exist, but no
// client can name it to connect.
var maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// checkSocketPath refuses a socket path that no socket address holds.
func checkSocketPath(flagName, path string) error {
	if len(path) > maxSocketPath {
		return fmt.Errorf("%s: the path is %d bytes long; a socket address holds at most %d: %q",
			flagName, len(path), maxSocketPath, path)
	}
	return nil
}

// checkNonNegative refuses a negative duration flag.
func checkNonNegative(flagName string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s must not be negative (got %v)", flagName, d)
	}
	return nil
}

// checkOwner refuses a user or a group, given by name or id, that does not
// exist. A numeric id is taken as it is: files may belong to ids that
// have no name.
func checkOwner(flagName, name string, group bool) error {
	if name == "" {
		return nil
	}
	if _, err := strconv.Atoi(name); err == nil {
		return nil
	}
	var err error
	if group {
		_, err = user.LookupGroup(name)
	} else {
		_, err = user.Lookup(name)
	}
	if err != nil {
		what := "user"
		if group {
			what = "group"
		}
		return fmt.Errorf("%s: no %s named %q", flagName, what, name)
	}
	return nil
}

// sameSocket reports whether two socket paths name the same file: the
// same path once cleaned, or, when both exist, the same device and inode.
func sameSocket(a, b string) bool {
	if a == "" || b == "" || a[0] == '@' || b[0] == '@' {
		return a == b
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
