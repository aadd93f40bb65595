package secnet

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// readCgroup reads /proc/<pid>/cgroup and derives the systemd unit. The
// caller confirms through a pidfd that pid still is the peer.
func readCgroup(pid int) (cgroupInfo, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/cgroup"
	b, err := readProcFile(name)
	if err != nil {
		return cgroupInfo{}, procError(name, err)
	}
	path, err := parseCgroupFile(string(b))
	if err != nil {
		return cgroupInfo{}, fmt.Errorf("%s: %w", name, err)
	}
	return cgroupUnits(path), nil
}

// readNamespaces reads the namespace ids of pid. The caller confirms
// through a pidfd that pid still is the peer.
func readNamespaces(pid int) (Namespaces, error) {
	n, err := namespacesIn("/proc/" + strconv.Itoa(pid) + "/ns/")
	var pe *os.PathError
	if errors.As(err, &pe) {
		return n, procError(pe.Path, pe.Err)
	}
	return n, err
}

// OwnNamespaces returns the ids of the namespaces of the calling process,
// to compare with Peer.Namespaces.
func OwnNamespaces() (Namespaces, error) {
	n, err := namespacesIn("/proc/self/ns/")
	if err != nil {
		return n, fmt.Errorf("reading this process's namespaces: %w", err)
	}
	return n, nil
}

// namespacesIn reads each link of dir, a /proc/<pid>/ns/ directory:
// "net:[4026531833]" gives the inode number of the namespace on nsfs.
// readlink costs half what stat does there. Reading another process's
// links needs ptrace-read access to it.
func namespacesIn(dir string) (Namespaces, error) {
	var n Namespaces
	var buf [64]byte
	for _, k := range NamespaceKinds() {
		name := dir + string(k)
		m, err := unix.Readlink(name, buf[:])
		if err != nil {
			return Namespaces{}, &os.PathError{Op: "readlink", Path: name, Err: err}
		}
		link := string(buf[:m])
		v, ok1 := strings.CutPrefix(link, string(k)+":[")
		v, ok2 := strings.CutSuffix(v, "]")
		id, err := strconv.ParseUint(v, 10, 64)
		if !ok1 || !ok2 || err != nil {
			return Namespaces{}, fmt.Errorf("%s: unexpected link %q", name, link)
		}
		*n.field(k) = id
	}
	return n, nil
}

// readProcFile reads a small file of /proc with plain system calls:
// os.ReadFile costs half as much again (a stat and the poller).
func readProcFile(name string) ([]byte, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, &os.PathError{Op: "read", Path: name, Err: err}
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
