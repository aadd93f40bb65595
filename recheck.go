package secnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// Errors of (*SecureConn).Recheck.
var (
	// ErrProgramChanged means the peer process called execve after the
	// connection was accepted: it now runs another executable, or the
	// same one in a new process image.
	ErrProgramChanged = errors.New("peer now runs a different executable")
	// ErrNoPidfd means the connection did not keep the peer's pidfd, so
	// the peer cannot be checked again: set KeepPidfd in ListenConfig or
	// Dialer, or call (*Listener).SetKeepPidfd.
	ErrNoPidfd = errors.New("connection did not keep the peer's pidfd (set KeepPidfd)")
)

// Recheck reports whether the process that connected is still alive and
// still runs the process image it ran when the connection was accepted
// (dialed, for a Dialer), so that an application can ask before a
// sensitive operation. It returns nil if so; an error that satisfies
// errors.Is(err, ErrPeerExited) when the process has exited;
// ErrProgramChanged when it has called execve since, of another program
// or of the same one; ErrNoPidfd when the connection was not set up to
// keep the peer's pidfd (see ListenConfig.KeepPidfd); and another error
// when it cannot tell (the connection was closed, the peer's pid is not
// visible, its /proc entry cannot be read). Any error means the peer is
// not the one that was verified, or may not be.
//
// The answer is race free on Linux 6.5 and later: the kept pidfd
// (SO_PEERPIDFD) pins the process that connected, Recheck reads /proc and
// then confirms through the pidfd that the process is still running, so a
// pid reused by another process is never mistaken for the peer. On older
// kernels the pidfd comes from pidfd_open when the connection is
// accepted, after a check of the process's start time, which narrows the
// pid-reuse race to a clock tick but does not close it.
//
// An execve is seen through a file of /proc/<pid> opened at accept,
// before the executable was read: /proc/<pid>/mem, or for a listener
// without ptrace-attach access /proc/<pid>/environ. It pins the memory map
// the process had, and reads as empty once the process has replaced it.
// A peer with an empty environment facing a listener that cannot open mem
// cannot be watched: its Recheck returns that reason. The executable is
// also compared as a file: device, inode and, where the file system
// records it, birth time. An executable upgraded in place (renamed over)
// while the peer runs does not count as a change; the peer still runs the
// old file.
//
// Recheck proves nothing about who writes on the socket: the peer may
// have passed it to another process (fork, SCM_RIGHTS) and the process
// that connected may run on unchanged; nor about code loaded without
// execve (dlopen, a ptracer). Recheck is safe for concurrent use.
func (c *SecureConn) Recheck() error {
	h := c.held
	if h == nil {
		return ErrNoPidfd
	}
	if h.err != nil {
		return h.err
	}
	if h.closed.Load() {
		return fmt.Errorf("secnet: recheck: %w", net.ErrClosed)
	}
	err := h.recheck()
	if err != nil && h.closed.Load() {
		return fmt.Errorf("secnet: recheck: %w", net.ErrClosed)
	}
	return err
}

// Close closes the connection and the pidfd (and the file of /proc that
// pins the peer's memory map) it kept for Recheck, if any.
// Closing twice closes nothing twice.
func (c *SecureConn) Close() error {
	if c.held != nil {
		c.held.close()
	}
	return c.UnixConn.Close()
}

// SetKeepPidfd makes the listener keep each accepted peer's pidfd, as
// ListenConfig.KeepPidfd does, for a listener made by NewListener. Call it
// before the first Accept.
func (l *Listener) SetKeepPidfd(keep bool) { l.v.keep = keep }

// heldPeer is what a connection keeps so that its peer can be checked
// again: the pidfd of the process that connected and its executable at
// the time.
type heldPeer struct {
	pidfd   *os.File // an *os.File closes the pidfd if the conn is dropped unclosed
	raw     syscall.RawConn
	mm      *os.File // pins the peer's memory map (see memMap), opened before the executable was read
	mmRaw   syscall.RawConn
	mmIsMem bool // mm is /proc/<pid>/mem
	pid     int  // in the listener's pid namespace
	procPID int  // in /proc's
	exe     exeStamp
	err     error // why the peer cannot be checked again; pidfd is nil then
	closed  atomic.Bool
}

// exeStamp identifies an executable file. The birth time, when the file
// system records it, tells a file apart from a later one that reuses its
// freed inode number.
type exeStamp struct {
	id       fileID
	btime    int64 // nanoseconds since the epoch
	hasBtime bool
}

// same reports whether s and o are the same file, comparing birth times
// when both are known.
func (s exeStamp) same(o exeStamp) bool {
	return s.id == o.id && (!s.hasBtime || !o.hasBtime || s.btime == o.btime)
}

func (h *heldPeer) close() {
	if h.closed.Swap(true) || h.pidfd == nil {
		return
	}
	h.pidfd.Close()
	h.mm.Close()
}
