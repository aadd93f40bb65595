package secnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readPeer reads the attributes in want from the connected socket c into
// p. Errors are recorded per attribute in p.errs.
func readPeer(c *net.UnixConn, want attrs, p *Peer, opts readOptions) {
	rc, err := c.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { readFD(int(fd), want, p, opts) })
	}
	if err != nil {
		p.fail(want, fmt.Errorf("reading peer identity: %w", err))
	}
}

func readFD(fd int, want attrs, p *Peer, opts readOptions) {
	if want&attrCred != 0 {
		p.known |= attrCred
		uc, err := peerCred(fd)
		switch {
		case err != nil:
			p.errs.cred = os.NewSyscallError("getsockopt SO_PEERCRED", err)
		case uc.Pid == 0 && uc.Uid == ^uint32(0) && uc.Gid == ^uint32(0):
			// What a datagram socket returns: no credentials, no error.
			p.errs.cred = ErrNoCredentials
		default:
			p.PID, p.UID, p.GID = int(uc.Pid), int(uc.Uid), int(uc.Gid)
			p.ovf = ownOverflowIDs()
		}
	}
	if p.errs.cred != nil {
		p.known |= want
		return
	}
	if want&attrGroups != 0 {
		p.known |= attrGroups
		p.Groups, p.errs.groups = peerGroups(fd)
	}
	if want&attrLabel != 0 {
		p.known |= attrLabel
		p.Label, p.errs.label = peerLabel(fd)
	}
	if want&procAttrs != 0 {
		readProcess(fd, want&procAttrs, p, opts)
	}
}

// procAttrs are the attributes read from /proc/<pid>, through one pidfd.
const procAttrs = attrProgram | attrCgroup | attrNamespaces | attrDigest

// readProcess reads the attributes in want (a subset of procAttrs) from
// /proc/<pid> of the peer, under a single pidfd: if the process that
// connected cannot be confirmed to have been alive throughout, every
// attribute gets that error.
func readProcess(fd int, want attrs, p *Peer, opts readOptions) {
	readProcessWith(want, p, func(read func(pid int)) error { return pinned(fd, p.PID, opts, read) })
}

// readProcessWith is readProcess with the pinning done by pin, which
// calls read with the pid to read and returns nil only if that pid was
// the peer's throughout: pinned for a connection, pinnedBy for the pidfd
// that came with a datagram.
func readProcessWith(want attrs, p *Peer, pin func(read func(pid int)) error) {
	p.known |= want
	var (
		exe                  string
		exeID                fileID
		cg                   cgroupInfo
		ns                   Namespaces
		exeErr, cgErr, nsErr error
		dg                   string
		dgErr                error
		exeStx               unix.Statx_t
	)
	mask := exeStatx
	if want&attrDigest != 0 {
		mask = digestStatx
	}
	err := pin(func(pid int) {
		if want&attrProgram != 0 {
			exe, exeID, exeErr = readExe(pid, mask, &exeStx)
		}
		if want&attrCgroup != 0 {
			cg, cgErr = readCgroup(pid)
		}
		if want&attrNamespaces != 0 {
			ns, nsErr = readNamespaces(pid)
		}
		if want&attrDigest != 0 {
			var read *unix.Statx_t // the statx readExe made just now
			if want&attrProgram != 0 && exeErr == nil {
				read = &exeStx
			}
			prog, same := programRead(want, p, exeID, exeErr)
			dg, dgErr = readDigest(pid, prog, same, read)
		}
	})
	if err != nil {
		exeErr, cgErr, nsErr, dgErr = err, err, err, err
	}
	if want&attrProgram != 0 {
		p.errs.program = exeErr
		if exeErr == nil {
			p.Program, p.exe = exe, exeID
		}
	}
	if want&attrCgroup != 0 {
		p.errs.cgroup = cgErr
		if cgErr == nil {
			p.Cgroup, p.Unit, p.Slice, p.UserUnit = cg.path, cg.unit, cg.slice, cg.userUnit
		}
	}
	if want&attrNamespaces != 0 {
		p.errs.namespaces = nsErr
		if nsErr == nil {
			p.Namespaces = ns
		}
	}
	if want&attrDigest != 0 {
		p.errs.digest = dgErr
		if dgErr == nil {
			p.ProgramSHA256 = dg
		}
	}
}

// peerGroups reads SO_PEERGROUPS. x/sys has no helper for it: the option
// fills an array of gid_t and answers ERANGE, with the size it needs in
// optlen, when the buffer is too small.
func peerGroups(fd int) ([]int, error) {
	var small [32]uint32
	buf := small[:]
	for {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch {
		case errno == unix.ERANGE && int(n) > len(buf)*4:
			buf = make([]uint32, (n+3)/4)
			continue
		case errno == unix.ENOPROTOOPT:
			return nil, fmt.Errorf("reading supplementary groups: SO_PEERGROUPS needs Linux 4.13 or later: %w", ErrUnsupported)
		case errno != 0:
			return nil, os.NewSyscallError("getsockopt SO_PEERGROUPS", errno)
		}
		out := make([]int, n/4)
		for i := range out {
			out[i] = int(buf[i])
		}
		return out, nil
	}
}

// peerLabel reads SO_PEERSEC. Without a security module that labels
// sockets the kernel answers ENOPROTOOPT: the peer simply has no label.
func peerLabel(fd int) (string, error) {
	s, err := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_PEERSEC)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return "", nil
	}
	if err != nil {
		return "", os.NewSyscallError("getsockopt SO_PEERSEC", err)
	}
	return s, nil
}

// pinned calls read with the pid of the process that connected and
// returns nil only if that process was alive throughout, race free: the
// pidfd from SO_PEERPIDFD pins the process the kernel recorded at
// connect(); read reads /proc/<pid>; then the pidfd must show the process
// still running, which proves that the pid was not reused meanwhile. One
// pidfd serves every attribute read.
func pinned(fd, pid int, opts readOptions, read func(pid int)) error {
	if pid <= 0 {
		return ErrPIDNotVisible
	}
	pidfd, err := peerPidfd(fd, pid, opts)
	if errors.Is(err, ErrUnsupported) {
		return pinnedByStartTime(pid, read) // before Linux 5.3: no pidfd at all
	}
	if err != nil {
		return err
	}
	defer unix.Close(pidfd)
	return pinnedBy(pidfd, pid, read)
}

// pinnedBy is pinned for a pidfd the caller holds (and closes), such as
// the SCM_PIDFD of a datagram: it calls read with pid, the process's pid
// in this pid namespace, and returns nil only if the process behind pidfd
// was alive when read returned, which proves that pid was not reused
// meanwhile.
func pinnedBy(pidfd, pid int, read func(pid int)) error {
	if pid <= 0 {
		return ErrPIDNotVisible
	}
	read(pid)
	alive, err := pidfdAlive(pidfd)
	switch {
	case err != nil:
		return err
	case !alive:
		return ErrPeerExited
	}
	return nil
}

// peerPidfd returns a pidfd for the peer of the socket fd: SO_PEERPIDFD,
// or on kernels without it (and in tests, with opts.noPeerPidfd)
// pidfd_open of pid checked against the process start time.
func peerPidfd(fd, pid int, opts readOptions) (int, error) {
	if !opts.noPeerPidfd {
		pidfd, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		switch {
		case err == nil:
			return pidfd, nil
		case errors.Is(err, unix.ENOPROTOOPT):
			// Linux before 6.5: fall back.
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ESRCH):
			return -1, fmt.Errorf("%w (getsockopt SO_PEERPIDFD: %v)", ErrPeerExited, err)
		default:
			return -1, os.NewSyscallError("getsockopt SO_PEERPIDFD", err)
		}
	}
	return pidfdByStartTime(pid)
}

// pidfdByStartTime opens a pidfd for pid and checks that the process
// behind it started no later than now and is the one that was there
// before pidfd_open. As for pinnedByStartTime, a pid reused before this
// call within one clock tick is not detected.
func pidfdByStartTime(pid int) (int, error) {
	start, err := startedBeforeNow(pid)
	if err != nil {
		return -1, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return -1, ErrPeerExited
	case errors.Is(err, unix.ENOSYS):
		return -1, fmt.Errorf("pidfd_open needs Linux 5.3 or later: %w", ErrUnsupported)
	case err != nil:
		return -1, os.NewSyscallError("pidfd_open", err)
	}
	if again, err := procStartTime(pid); err != nil || again != start {
		unix.Close(pidfd)
		return -1, ErrPeerExited
	}
	return pidfd, nil
}

// pinnedByStartTime is the last resort, for kernels without pidfds
// (before Linux 5.3): the process behind pid must have started no later
// than now and must not change while read runs. A pid reused within one
// clock tick is not detected.
func pinnedByStartTime(pid int, read func(pid int)) error {
	start, err := startedBeforeNow(pid)
	if err != nil {
		return err
	}
	read(pid)
	if again, err := procStartTime(pid); err != nil || again != start {
		return ErrPeerExited
	}
	return nil
}

// startedBeforeNow returns the start time of the process behind pid, and
// an error if it started after this call began: then the pid was reused.
func startedBeforeNow(pid int) (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, os.NewSyscallError("clock_gettime", err)
	}
	now := uint64(ts.Nano()) / 1e7 // USER_HZ: /proc reports 100 ticks a second
	start, err := procStartTime(pid)
	if err != nil {
		return 0, err
	}
	if start > now {
		return 0, fmt.Errorf("%w (its pid %d now belongs to a process started later)", ErrPeerExited, pid)
	}
	return start, nil
}

// exeStatx is what readExe asks statx for.
const exeStatx = unix.STATX_INO | unix.STATX_NLINK

// readExe reads the path and the file identity of /proc/<pid>/exe. stx
// receives what statx gave for the file, with the fields of mask as well
// as those of exeStatx, so that a digest needs no second statx.
func readExe(pid, mask int, stx *unix.Statx_t) (string, fileID, error) {
	link := procPath(pid, "exe")
	var buf [unix.PathMax]byte
	n, err := readlinkPath(&link, buf[:])
	if err != nil {
		return "", fileID{}, procError(link.String(), err)
	}
	if n == len(buf) {
		return "", fileID{}, fmt.Errorf("%w: %s: the path is longer than PATH_MAX", ErrProcUnavailable, link.String())
	}
	if err := statxPathMask(&link, mask|exeStatx, stx); err != nil {
		return "", fileID{}, procError(link.String(), err)
	}
	path := string(buf[:n])
	if stx.Nlink == 0 || strings.HasSuffix(path, " (deleted)") {
		return "", fileID{}, fmt.Errorf("%w: %q", ErrProgramDeleted, path)
	}
	return path, statxFileID(stx), nil
}

// procError explains why a file under /proc/<pid> could not be read.
func procError(name string, err error) error {
	var why string
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		why = "permission denied: reading another user's or a non-dumpable process needs ptrace-read access (root with CAP_SYS_PTRACE), or /proc is mounted with hidepid"
	case errors.Is(err, unix.ENOENT) && exiting(name):
		// The kernel drops an exiting process's memory map and namespaces
		// before its pidfd reports the exit.
		return fmt.Errorf("%w (it was exiting: %s is gone while /proc/<pid> remains)", ErrPeerExited, name)
	case errors.Is(err, unix.ENOENT):
		why = "no such entry: /proc is not mounted, hides other users' processes (hidepid), or the process is gone"
	default:
		why = err.Error()
	}
	return fmt.Errorf("%w: %s: %s", ErrProcUnavailable, name, why)
}

// exiting reports whether name, a file under /proc/<pid> that was not
// found, belongs to a process whose /proc/<pid> directory still exists: a
// process in the middle of exiting.
func exiting(name string) bool {
	rest, ok := strings.CutPrefix(name, "/proc/")
	if !ok {
		return false
	}
	pid, _, ok := strings.Cut(rest, "/")
	if !ok || pid == "self" {
		return false
	}
	_, err := os.Lstat("/proc/" + pid)
	return err == nil
}

// procStartTime returns field 22 of /proc/<pid>/stat: the time the
// process started, in clock ticks since boot.
func procStartTime(pid int) (uint64, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/stat"
	b, err := os.ReadFile(name)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return 0, ErrPeerExited
		}
		return 0, procError(name, err)
	}
	return parseStartTime(string(b))
}

// parseStartTime extracts the start time from the text of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may itself contain
// spaces and parentheses, so the fields are counted after the last ')'.
func parseStartTime(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/<pid>/stat: no ')'")
	}
	fields := strings.Fields(stat[i+1:])
	const startTime = 22 - 3 // fields after the name start at field 3
	if len(fields) <= startTime {
		return 0, fmt.Errorf("malformed /proc/<pid>/stat: %d fields after the name", len(fields))
	}
	v, err := strconv.ParseUint(fields[startTime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed /proc/<pid>/stat: start time: %w", err)
	}
	return v, nil
}

// pidfdAlive reports whether the process behind pidfd is still running.
// A pidfd polls readable once the process has exited (zombies included).
func pidfdAlive(pidfd int) (bool, error) {
	fds := [1]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, os.NewSyscallError("poll pidfd", err)
		}
		return n == 0, nil
	}
}
