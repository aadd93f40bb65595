package secnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PeerOfProcess returns the identity of the running process pid, read from
// /proc/<pid>: its effective uid and gid and supplementary groups (from
// status), its executable (exe, through a pidfd so that it belongs to the
// process that had pid when PeerOfProcess was called) and its LSM label
// (attr/current). It serves to check a policy against a process, as
// `secnet check --pid` does.
//
// This is not connect-time identity: it is what the process is now, not
// what it was when it connected to a socket, and the ids come from /proc
// rather than from the kernel's record of a connection. Listeners get
// their peers' identity from the socket (SecureConn.Peer).
//
// The error is non-nil when the process does not exist or its credentials
// cannot be read. A program or label that cannot be read (another user's
// process without root, say) is recorded in the Peer, whose Err reports
// it, and rules that need it fail.
func PeerOfProcess(pid int) (Peer, error) {
	if pid <= 0 {
		return Peer{}, fmt.Errorf("secnet: invalid pid %d", pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return Peer{}, fmt.Errorf("secnet: process %d: %w", pid, ErrPeerExited)
	case err != nil:
		return Peer{}, fmt.Errorf("secnet: process %d: %w", pid, os.NewSyscallError("pidfd_open (Linux 5.3 or later)", err))
	}
	defer unix.Close(pidfd)
	// /proc may number processes in another pid namespace than the
	// caller's (see procPID): read it under the pid it knows.
	ppid, err := procPID(pidfd, pid)
	if err != nil {
		return Peer{}, fmt.Errorf("secnet: process %d: %w", pid, err)
	}
	p := Peer{PID: pid, known: attrAll &^ procAttrs}
	if err := readStatus(ppid, &p); err != nil {
		return Peer{}, fmt.Errorf("secnet: process %d: %w", pid, err)
	}
	p.ovf = ownOverflowIDs()
	p.Label, p.errs.label = procLabel(ppid)
	// The executable, cgroup and namespaces, read as for a connection's
	// peer; the pidfd confirms below that ppid was the process throughout.
	var r procRead
	r.read(context.Background(), ppid, attrAll&procAttrs, &p)
	if err := pidfdRunning(pidfd); err != nil {
		return Peer{}, fmt.Errorf("secnet: process %d: %w", pid, err)
	}
	r.store(attrAll&procAttrs, &p, nil)
	return p, nil
}

// readStatus reads the effective uid and gid and the supplementary groups
// from /proc/<pid>/status.
func readStatus(pid int, p *Peer) error {
	name := "/proc/" + strconv.Itoa(pid) + "/status"
	b, err := os.ReadFile(name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return ErrPeerExited
		}
		return procError(name, err)
	}
	return parseStatus(name, b, p)
}

// parseStatus reads the effective uid and gid and the supplementary groups
// from b, the text of the status file name.
func parseStatus(name string, b []byte, p *Peer) error {
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, len(b)+1) // a Groups line can be longer than Scanner's default 64 KiB
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(val)
		switch key {
		case "Uid", "Gid":
			// real, effective, saved, filesystem
			if len(fields) != 4 {
				return fmt.Errorf("malformed %s: %s line", name, key)
			}
			id, err := strconv.Atoi(fields[1])
			if err != nil {
				return fmt.Errorf("malformed %s: %s line: %w", name, key, err)
			}
			if key == "Uid" {
				p.UID = id
			} else {
				p.GID = id
			}
			seen++
		case "Groups":
			p.Groups = make([]int, len(fields))
			for i, f := range fields {
				var err error
				if p.Groups[i], err = strconv.Atoi(f); err != nil {
					return fmt.Errorf("malformed %s: Groups line: %w", name, err)
				}
			}
			seen++
		}
	}
	if seen != 3 {
		return fmt.Errorf("malformed %s: no Uid, Gid or Groups line", name)
	}
	return nil
}

// procLabel reads the LSM label of a process. Without a security module
// that labels processes the kernel answers EINVAL: no label.
func procLabel(pid int) (string, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/attr/current"
	b, err := os.ReadFile(name)
	switch {
	case errors.Is(err, unix.EINVAL):
		return "", nil
	case err != nil:
		return "", procError(name, err)
	}
	return strings.TrimRight(string(b), "\x00\n"), nil
}
