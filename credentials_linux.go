package secnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procHandle is the peer's process as one verification reads it: the
// pidfd opened at the first /proc read (SO_PEERPIDFD), the pid under which
// /proc lists the peer, and with KeepPidfd what Recheck keeps.
type procHandle struct {
	opened bool   // open was called: pidfd, pid and err are set
	pidfd  int    // -1 when there is none (err, or a kernel without pidfds)
	start  uint64 // without a pidfd: the start time that pins the pid
	pid    int    // the peer's pid in /proc's pid namespace
	err    error  // why /proc cannot be read for this peer

	mm  memMap   // with KeepPidfd: pins the peer's memory map (fd -1 if none)
	exe exeStamp // with KeepPidfd: the executable, as the rules saw it
	// exeRead says exe was read through this handle.
	exeRead bool
}

// open opens the pidfd of the peer of the socket c, whose SO_PEERCRED pid
// is pid, and finds the pid that /proc gives the peer.
func (h *procHandle) open(c *net.UnixConn, pid int, opts readOptions) {
	h.opened, h.pidfd, h.mm.fd = true, -1, -1
	if pid <= 0 {
		h.err = ErrPIDNotVisible
		return
	}
	rc, err := c.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { h.pidfd, err = peerPidfd(int(fd), pid, opts) })
		if cerr != nil {
			err = cerr
		}
	}
	switch {
	case errors.Is(err, ErrUnsupported):
		// Before Linux 5.3: no pidfd at all. The start time pins the pid.
		h.pidfd = -1
		if h.err = procIsOwn(); h.err == nil {
			h.pid = pid
			h.start, h.err = startedBeforeNow(pid)
		}
		return
	case err != nil:
		if h.pidfd >= 0 {
			unix.Close(h.pidfd)
		}
		h.pidfd, h.err = -1, err
		return
	}
	h.pid, h.err = procPID(h.pidfd, pid)
}

// alive returns nil when the process behind the handle still runs: then
// what was read under /proc/<pid> since open belongs to the peer.
func (h *procHandle) alive() error {
	if h.pidfd < 0 {
		if again, err := procStartTime(h.pid); err != nil || again != h.start {
			return ErrPeerExited
		}
		return nil
	}
	return pidfdRunning(h.pidfd)
}

// release closes what the handle holds, unless it was handed to Recheck.
func (h *procHandle) release() {
	if !h.opened {
		return
	}
	if h.pidfd >= 0 {
		unix.Close(h.pidfd)
	}
	if h.mm.fd >= 0 {
		unix.Close(h.mm.fd)
	}
	*h = procHandle{}
}

// readIdentity reads the attributes in want into id.peer, cheapest first:
// what the socket gives, then /proc through the peer's pidfd, then the
// digest of its executable. The caller holds id.mu.
func readIdentity(ctx context.Context, id *identity, want attrs) {
	p := &id.peer
	if sock := want & sockAttrs; sock != 0 {
		rc, err := id.conn.SyscallConn()
		if err == nil {
			err = rc.Control(func(fd uintptr) { readSocket(int(fd), sock, p) })
		}
		if err != nil {
			p.fail(want, fmt.Errorf("reading peer identity: %w", err))
			return
		}
	}
	if p.errs.cred != nil {
		p.known |= want
		return
	}
	if proc := want & procAttrs; proc != 0 {
		id.readProc(ctx, proc)
	}
}

// readSocket reads the attributes in want (a subset of sockAttrs) from the
// connected socket fd.
func readSocket(fd int, want attrs, p *Peer) {
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
}

// readProc reads the attributes in want (a subset of procAttrs) from
// /proc/<pid> of the peer, through the pidfd of the verification (opened
// now if no attribute needed it before): if the process that connected
// cannot be confirmed to have been alive throughout, every attribute read
// now gets that error. The digest is read last, and not at all once ctx
// is done.
func (id *identity) readProc(ctx context.Context, want attrs) {
	p, h := &id.peer, &id.proc
	if !h.opened {
		h.open(id.conn, p.PID, id.opts)
	}
	var r procRead
	err := h.err
	if err == nil {
		if id.keep && h.mm.fd < 0 {
			// Before the executable is read: Recheck sees an execve from
			// now on.
			h.mm, _ = openMemMap(h.pid, id.opts)
		}
		r.read(ctx, h.pid, want, p)
		err = h.alive()
	}
	r.store(want, p, err)
	if want&attrProgram != 0 && p.errs.program == nil {
		h.exe, h.exeRead = r.exe, true
	}
}

// procRead is what one batch of reads of /proc/<pid> found, before the
// pidfd confirmed that pid was the peer's throughout.
type procRead struct {
	path                        string
	exe                         exeStamp
	cg                          cgroupInfo
	ns                          Namespaces
	dg                          string
	exeErr, cgErr, nsErr, dgErr error
}

// read reads the attributes in want (a subset of procAttrs) of the
// process /proc lists as pid; the digest last, and not once ctx is done.
func (r *procRead) read(ctx context.Context, pid int, want attrs, p *Peer) {
	var stx unix.Statx_t
	mask := exeStatx
	if want&attrDigest != 0 {
		mask |= digestStatx
	}
	if want&attrProgram != 0 {
		r.path, r.exe, r.exeErr = readExe(pid, mask, &stx)
	}
	if want&attrCgroup != 0 {
		r.cg, r.cgErr = readCgroup(pid)
	}
	if want&attrNamespaces != 0 {
		r.ns, r.nsErr = readNamespaces(pid)
	}
	if want&attrDigest != 0 {
		var read *unix.Statx_t // the statx readExe made just now
		if want&attrProgram != 0 && r.exeErr == nil {
			read = &stx
		}
		prog, same := programRead(want, p, r.exe.id, r.exeErr)
		if r.dgErr = stopped(ctx); r.dgErr == nil {
			r.dg, r.dgErr = readDigest(ctx, pid, prog, same, read)
		}
	}
}

// store records in p what was read of the attributes in want, or err for
// each of them when the reads cannot be trusted (err is not nil).
func (r *procRead) store(want attrs, p *Peer, err error) {
	p.known |= want
	if err != nil {
		r.exeErr, r.cgErr, r.nsErr, r.dgErr = err, err, err, err
	}
	if want&attrProgram != 0 {
		p.errs.program = r.exeErr
		if r.exeErr == nil {
			p.Program, p.exe = r.path, r.exe.id
		}
	}
	if want&attrCgroup != 0 {
		p.errs.cgroup = r.cgErr
		if r.cgErr == nil {
			p.Cgroup, p.Unit, p.Slice, p.UserUnit = r.cg.path, r.cg.unit, r.cg.slice, r.cg.userUnit
		}
	}
	if want&attrNamespaces != 0 {
		p.errs.namespaces = r.nsErr
		if r.nsErr == nil {
			p.Namespaces = r.ns
		}
	}
	if want&attrDigest != 0 {
		p.errs.digest = r.dgErr
		if r.dgErr == nil {
			p.ProgramSHA256 = r.dg
		}
	}
}

// readProcessWith reads the attributes in want (a subset of procAttrs)
// of a process that pin pins: pin calls read with the pid /proc lists the
// process under and returns nil only if that pid was the process's
// throughout (pinnedBy, for the pidfd that came with a datagram). A
// digest is not read once ctx is done.
func readProcessWith(ctx context.Context, want attrs, p *Peer, pin func(read func(pid int)) error) {
	var r procRead
	err := pin(func(pid int) { r.read(ctx, pid, want, p) })
	r.store(want, p, err)
}

// pinnedBy calls read with the pid under which /proc lists the process
// behind pidfd, a pidfd the caller holds (and closes), such as the
// SCM_PIDFD of a datagram, whose pid in this pid namespace is pid. It
// returns nil only if the process was alive when read returned, which
// proves that the pid was not reused meanwhile.
func pinnedBy(pidfd, pid int, read func(pid int)) error {
	if pid <= 0 {
		return ErrPIDNotVisible
	}
	ppid, err := procPID(pidfd, pid)
	if err != nil {
		return err
	}
	read(ppid)
	return pidfdRunning(pidfd)
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
	if err := procIsOwn(); err != nil {
		return -1, err
	}
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

// pidfdRunning returns nil while the process behind pidfd runs,
// ErrPeerExited once it has exited, or why that cannot be told.
func pidfdRunning(pidfd int) error {
	alive, err := pidfdAlive(pidfd)
	switch {
	case err != nil:
		return err
	case !alive:
		return ErrPeerExited
	}
	return nil
}
