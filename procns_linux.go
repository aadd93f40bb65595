package secnet

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// /proc is indexed by the pids of the pid namespace it was mounted for,
// which need not be the listener's: a listener started with `unshare
// --pid --fork` but no new /proc, or in a sandbox that binds the host's
// /proc, sees /proc/<n> of another process than its own pid n. Reading
// /proc/<pid> with the pid SO_PEERCRED gives would then read a stranger.
//
// Whether /proc is this process's is found once: /proc/self names this
// process by its pid in /proc's namespace, which is getpid() only when
// the namespaces agree. When they differ, each peer is found under the pid
// /proc itself shows for its pidfd (the Pid: line of
// /proc/self/fdinfo/<pidfd>, which the kernel writes in /proc's pid
// namespace); when that is impossible the peer fails, with the reason.

// procNS caches what procOwn found: 0 not known yet, 1 /proc is this
// process's, 2 it is another pid namespace's. A failure to read
// /proc/self is not cached: /proc may be mounted later.
var procNS atomic.Int32

// procOwn reports whether /proc was mounted for this process's pid
// namespace, and if not whether it can be used at all.
func procOwn() (bool, error) {
	switch procNS.Load() {
	case 1:
		return true, nil
	case 2:
		return false, nil
	}
	self, err := os.Readlink("/proc/self")
	switch {
	case err != nil:
		return false, procError("/proc/self", err)
	case self == strconv.Itoa(os.Getpid()):
		procNS.Store(1)
		return true, nil
	}
	procNS.Store(2)
	return false, nil
}

// procIsOwn returns nil when /proc is this process's, else why a peer
// known only by its pid cannot be found there.
func procIsOwn() error {
	own, err := procOwn()
	switch {
	case err != nil:
		return err
	case !own:
		return fmt.Errorf("%w: /proc belongs to another pid namespace than this process's, and without a pidfd the peer cannot be found in it", ErrProcUnavailable)
	}
	return nil
}

// procPID returns the pid under which /proc lists the process behind
// pidfd, whose pid in this process's namespace is pid.
func procPID(pidfd, pid int) (int, error) {
	own, err := procOwn()
	switch {
	case err != nil:
		return 0, err
	case own:
		return pid, nil
	}
	name := "/proc/self/fdinfo/" + strconv.Itoa(pidfd)
	b, err := readProcFile(name)
	if err != nil {
		return 0, fmt.Errorf("%w: /proc belongs to another pid namespace than this process's, and %s cannot be read: %v", ErrProcUnavailable, name, err)
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, "Pid:")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case err != nil:
			return 0, fmt.Errorf("%s: malformed Pid line %q", name, line)
		case n == -1:
			return 0, ErrPeerExited
		case n <= 0:
			return 0, fmt.Errorf("%w: the peer is not visible in the pid namespace /proc belongs to, which is not this process's", ErrProcUnavailable)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: /proc belongs to another pid namespace than this process's, and %s has no Pid line (Linux 5.10 or later gives it)", ErrProcUnavailable, name)
}

// A memMap is an open file of /proc/<pid> that pins the memory map the
// process had when it was opened: once the process calls execve (or
// exits), the kernel finds the map gone when the file is read (mem and
// environ check that the map still has users; auxv, which reads a copy
// kept in the map's structure, does not, and serves for nothing here).
type memMap struct {
	fd  int
	mem bool // /proc/<pid>/mem, else /proc/<pid>/environ
}

// openMemMap opens /proc/<pid>/mem, which needs ptrace-attach access
// (root has it), or else /proc/<pid>/environ, which needs the
// ptrace-read access that the executable needs anyway but tells nothing
// about a process with an empty environment. The caller confirms through
// the pidfd that pid still is the peer.
func openMemMap(pid int, opts readOptions) (memMap, error) {
	if !opts.noMemFile {
		p := procPath(pid, "mem")
		if fd, err := unix.Open(p.String(), unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			return memMap{fd: fd, mem: true}, nil
		}
	}
	p := procPath(pid, "environ")
	fd, err := unix.Open(p.String(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return memMap{fd: -1}, procError(p.String(), err)
	}
	m := memMap{fd: fd}
	if same, err := m.same(); err != nil || !same {
		unix.Close(fd)
		if err == nil {
			err = errors.New("the peer's environment is empty, and /proc/<pid>/mem cannot be opened without ptrace-attach access: an execve could not be detected")
		}
		return memMap{fd: -1}, err
	}
	return m, nil
}

// same reports whether the process still has the memory map it had when
// m was opened: false after an execve or an exit.
func (m memMap) same() (bool, error) {
	var b [1]byte
	for {
		// mem at address 0: EIO (nothing mapped there) while the map
		// lives, 0 bytes once it is gone.
		n, err := unix.Pread(m.fd, b[:], 0)
		switch {
		case err == unix.EINTR:
			continue
		case m.mem && err == unix.EIO:
			return true, nil
		case err != nil:
			return false, os.NewSyscallError("pread", err)
		}
		return n > 0, nil
	}
}
