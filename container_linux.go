package secnet

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// readCgroup reads /proc/<pid>/cgroup and derives the systemd unit. The
// caller confirms through a pidfd that pid still is the peer.
func readCgroup(pid int) (cgroupInfo, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/cgroup"
	b, err := os.ReadFile(name)
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

// namespacesIn stats each file of dir, a /proc/<pid>/ns/ directory. A
// stat follows the link to the namespace's inode on nsfs. Reading
// another process's links needs ptrace-read access to it.
func namespacesIn(dir string) (Namespaces, error) {
	var n Namespaces
	for _, k := range NamespaceKinds() {
		var st unix.Stat_t
		name := dir + string(k)
		if err := unix.Stat(name, &st); err != nil {
			return Namespaces{}, &os.PathError{Op: "stat", Path: name, Err: err}
		}
		*n.field(k) = st.Ino
	}
	return n, nil
}
