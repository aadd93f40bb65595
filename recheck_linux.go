package secnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// holdPeer keeps the pidfd of the peer of c, which passed the rules with
// the identity p, and the file it runs, for Recheck. A peer that cannot be
// held (it has exited, its pid is not visible, ...) gets a heldPeer whose
// err says why, which Recheck returns: keeping the pidfd never changes
// which peers are accepted.
func holdPeer(c *net.UnixConn, p *Peer, opts readOptions) *heldPeer {
	h := &heldPeer{pid: p.PID}
	if p.PID <= 0 {
		h.err = ErrPIDNotVisible
		return h
	}
	pidfd := -1
	rc, err := c.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { pidfd, err = peerPidfd(int(fd), p.PID, opts) })
		if cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		h.err = fmt.Errorf("keeping the peer's pidfd: %w", err)
		return h
	}
	exe, err := statExe(p.PID)
	alive, aerr := pidfdAlive(pidfd)
	switch {
	case aerr != nil:
		err = aerr
	case !alive:
		err = ErrPeerExited
	}
	if err != nil {
		unix.Close(pidfd)
		h.err = err
		return h
	}
	if p.known&attrProgram != 0 && p.errs.program == nil && exe.id != p.exe {
		// The peer called execve after its rules were checked: keep the
		// file they saw, so that Recheck reports the change.
		exe = exeStamp{id: p.exe}
	}
	h.pidfd = os.NewFile(uintptr(pidfd), "pidfd:"+strconv.Itoa(p.PID))
	if h.raw, err = h.pidfd.SyscallConn(); err != nil {
		h.pidfd.Close()
		h.pidfd, h.err = nil, err
		return h
	}
	h.exe = exe
	return h
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
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return -1, os.NewSyscallError("clock_gettime", err)
	}
	now := uint64(ts.Nano()) / 1e7 // USER_HZ: /proc reports 100 ticks a second
	start, err := procStartTime(pid)
	if err != nil {
		return -1, err
	}
	if start > now {
		return -1, fmt.Errorf("%w (its pid %d now belongs to a process started later)", ErrPeerExited, pid)
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

// statExe identifies the executable of pid. The caller confirms through a
// pidfd that pid still is the peer.
func statExe(pid int) (exeStamp, error) {
	link := procPath(pid, "exe")
	var stx unix.Statx_t
	if err := statxPathMask(&link, unix.STATX_INO|unix.STATX_BTIME, &stx); err != nil {
		return exeStamp{}, procError(link.String(), err)
	}
	s := exeStamp{id: statxFileID(&stx)}
	if stx.Mask&unix.STATX_BTIME != 0 {
		s.btime, s.hasBtime = stx.Btime.Sec*1e9+int64(stx.Btime.Nsec), true
	}
	return s, nil
}

// recheck reads the peer's executable now and then confirms through the
// kept pidfd that the peer is still running.
func (h *heldPeer) recheck() error {
	var err error
	if cerr := h.raw.Control(func(fd uintptr) { err = h.recheckFD(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

func (h *heldPeer) recheckFD(pidfd int) error {
	exe, err := statExe(h.pid)
	changed := err == nil && !exe.same(h.exe)
	var now string
	if changed {
		// Only for the message; read before the liveness check so that it
		// is the peer's.
		now, _ = os.Readlink("/proc/" + strconv.Itoa(h.pid) + "/exe")
	}
	alive, aerr := pidfdAlive(pidfd)
	switch {
	case aerr != nil:
		return aerr
	case !alive:
		return ErrPeerExited
	case err != nil:
		return err
	case changed && now != "":
		return fmt.Errorf("%w: %s", ErrProgramChanged, now)
	case changed:
		return ErrProgramChanged
	}
	return nil
}
