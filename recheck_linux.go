package secnet

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// hold hands the pidfd the verification of an accepted peer opened (or, if
// no rule read /proc, one opened now) to a heldPeer for Recheck, with an
// open file of /proc/<pid> that pins the peer's memory map (see memMap) and the identity of
// its executable as the rules saw it. A peer that cannot be held (it has
// exited, its pid is not visible, ...) gets a heldPeer whose err says why,
// which Recheck returns: keeping the pidfd never changes which peers are
// accepted. The caller holds id.mu.
func (id *identity) hold() *heldPeer {
	p, h := &id.peer, &id.proc
	held := &heldPeer{pid: p.PID}
	if !h.opened {
		h.open(id.conn, p.PID, id.opts)
	}
	err := h.err
	if err == nil && h.pidfd < 0 {
		err = fmt.Errorf("no pidfd for the peer (pidfd_open needs Linux 5.3 or later): %w", ErrUnsupported)
	}
	if err == nil && h.mm.fd < 0 {
		h.mm, err = openMemMap(h.pid, id.opts)
	}
	exe := h.exe
	if err == nil && !h.exeRead {
		exe, err = statExe(h.pid)
	}
	if h.err == nil {
		if aerr := h.alive(); aerr != nil {
			err = aerr // what failed before failed because the peer is gone
		}
	}
	if err != nil {
		held.err = fmt.Errorf("keeping the peer's pidfd: %w", err)
		return held
	}
	held.pidfd = os.NewFile(uintptr(h.pidfd), "pidfd:"+strconv.Itoa(p.PID))
	held.mm, held.mmIsMem = os.NewFile(uintptr(h.mm.fd), "mm:"+strconv.Itoa(p.PID)), h.mm.mem
	h.pidfd, h.mm.fd = -1, -1 // the heldPeer owns them now
	if held.raw, err = held.pidfd.SyscallConn(); err == nil {
		held.mmRaw, err = held.mm.SyscallConn()
	}
	if err != nil {
		held.pidfd.Close()
		held.mm.Close()
		held.pidfd, held.mm, held.err = nil, nil, err
		return held
	}
	held.procPID, held.exe = h.pid, exe
	return held
}

// statExe identifies the executable of pid, without asking the file
// system for fresh attributes. The caller confirms through a pidfd that
// pid still is the peer.
func statExe(pid int) (exeStamp, error) {
	link := procPath(pid, "exe")
	var stx unix.Statx_t
	if err := statxPathMask(&link, unix.AT_STATX_DONT_SYNC, unix.STATX_INO|unix.STATX_BTIME, &stx); err != nil {
		return exeStamp{}, procError(link.String(), err)
	}
	return statxStamp(&stx), nil
}

// recheck reads the peer's memory map and executable now and then
// confirms through the kept pidfd that the peer is still running.
func (h *heldPeer) recheck() error {
	var (
		same   bool
		mapErr error
		err    error
	)
	if cerr := h.mmRaw.Control(func(fd uintptr) { same, mapErr = memMap{fd: int(fd), mem: h.mmIsMem}.same() }); cerr != nil {
		return cerr
	}
	if cerr := h.raw.Control(func(fd uintptr) { err = h.recheckFD(int(fd), same, mapErr) }); cerr != nil {
		return cerr
	}
	return err
}

func (h *heldPeer) recheckFD(pidfd int, sameMap bool, mapErr error) error {
	exe, err := statExe(h.procPID)
	changed := err == nil && !exe.same(h.exe)
	var now string
	if changed || (mapErr == nil && !sameMap) {
		// Only for the message; read before the liveness check so that it
		// is the peer's.
		now, _ = os.Readlink("/proc/" + strconv.Itoa(h.procPID) + "/exe")
	}
	if aerr := pidfdRunning(pidfd); aerr != nil {
		return aerr
	}
	switch {
	case mapErr != nil:
		return mapErr
	case err != nil:
		return err
	case changed && now != "":
		return fmt.Errorf("%w: %q", ErrProgramChanged, now)
	case changed:
		return ErrProgramChanged
	case !sameMap:
		return fmt.Errorf("%w: it called execve (now %q)", ErrProgramChanged, now)
	}
	return nil
}
