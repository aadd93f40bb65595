package secnet

import (
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
		return fmt.Errorf("%w: %q", ErrProgramChanged, now)
	case changed:
		return ErrProgramChanged
	}
	return nil
}
