package secnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// packetSys is what a PacketConn keeps on Linux: which credentials the
// socket asks the kernel for, and the buffers for control messages.
type packetSys struct {
	// pidfds is set when the socket has SO_PASSPIDFD: every datagram
	// then carries a pidfd of its sender. noPidfd is set when the kernel
	// has no SO_PASSPIDFD (before 6.5): pidfd_open is the fallback.
	pidfds, noPidfd atomic.Bool
	// labels is set when the socket has SO_PASSSEC.
	labels atomic.Bool
	// setMu serializes enabling options for ReadFromPeer.
	setMu sync.Mutex
	// bufs holds *readBuf.
	bufs sync.Pool
	// oobSize is the size of the control message buffer (smaller only in
	// tests).
	oobSize int
	opts    readOptions
	// timeout bounds the hashing of an executable for a datagram
	// (ListenConfig.VerifyTimeout); 0: none.
	timeout time.Duration
}

// oobSize is large enough for every control message a datagram can bring
// at once, so that none is truncated: credentials, a pidfd, a security
// label of up to 4 KiB, a timestamp and the most file descriptors one
// message can carry (SCM_MAX_FD, 253).
var oobSize = unix.CmsgSpace(unix.SizeofUcred) + unix.CmsgSpace(4) + unix.CmsgSpace(4096) +
	unix.CmsgSpace(16) + unix.CmsgSpace(253*4)

// pidfdAttrs are the attributes read through the sender's pidfd.
const pidfdAttrs = attrGroups | procAttrs

// listenPacket creates the datagram socket for lc and sets the options
// that make the kernel attach the sender's identity to each datagram,
// before the socket is bound: no datagram can arrive without them.
func listenPacket(ctx context.Context, lc *ListenConfig, network, address string, v verifier) (*PacketConn, error) {
	pc := &PacketConn{v: v, rejected: lc.Rejected}
	pc.sys.oobSize, pc.sys.opts = oobSize, v.opts
	switch pc.sys.timeout = lc.VerifyTimeout; {
	case lc.VerifyTimeout == 0:
		pc.sys.timeout = DefaultVerifyTimeout
	case lc.VerifyTimeout < 0:
		pc.sys.timeout = 0
	}
	control := func(network, address string, c syscall.RawConn) error {
		if lc.Control != nil {
			if err := lc.Control(network, address, c); err != nil {
				return err
			}
		}
		var err error
		if cerr := c.Control(func(fd uintptr) {
			if err = pc.sys.enable(int(fd), v.need); err == nil {
				err = pc.sys.stampIfNoPidfd(int(fd))
			}
		}); cerr != nil {
			return cerr
		}
		return err
	}
	conn, file, err := listenUnixgram(ctx, lc, network, address, control)
	if err != nil {
		return nil, err
	}
	pc.conn, pc.file = conn, file
	return pc, nil
}

// enable sets the socket options that attach what want needs to each
// datagram. SO_PASSCRED is always set.
func (s *packetSys) enable(fd int, want attrs) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return os.NewSyscallError("setsockopt SO_PASSCRED", err)
	}
	if want&pidfdAttrs != 0 && !s.pidfds.Load() && !s.noPidfd.Load() {
		err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSPIDFD, 1)
		switch {
		case s.opts.noPeerPidfd || errors.Is(err, unix.ENOPROTOOPT):
			// Linux before 6.5: pidfd_open per datagram, checked against
			// the time the datagram was sent (SCM_TIMESTAMPNS).
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
				return os.NewSyscallError("setsockopt SO_TIMESTAMPNS", err)
			}
			s.noPidfd.Store(true)
		case err != nil:
			return os.NewSyscallError("setsockopt SO_PASSPIDFD", err)
		default:
			s.pidfds.Store(true)
		}
	}
	if want&attrLabel != 0 && !s.labels.Load() {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSSEC, 1); err != nil {
			return os.NewSyscallError("setsockopt SO_PASSSEC", err)
		}
		s.labels.Store(true)
	}
	return nil
}

// stampIfNoPidfd makes a socket on a kernel without SO_PASSPIDFD (before
// 6.5) stamp every datagram with the time it was sent (SO_TIMESTAMPNS)
// from the start, although no rule needs the sender's process: the stamp
// pins the sender's pid when ReadFromPeer reads its process later, and a
// datagram that arrived before SO_TIMESTAMPNS was set is stamped with the
// time it is read instead, which would let a process that took over the
// pid of an exited sender meanwhile pass for it.
func (s *packetSys) stampIfNoPidfd(fd int) error {
	if s.pidfds.Load() || s.noPidfd.Load() {
		return nil
	}
	_, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSPIDFD)
	if !s.opts.noPeerPidfd && !errors.Is(err, unix.ENOPROTOOPT) {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return os.NewSyscallError("setsockopt SO_TIMESTAMPNS", err)
	}
	s.noPidfd.Store(true)
	return nil
}

// enableFor makes sure the socket attaches what want needs, for
// ReadFromPeer, which needs more than the rules. The kernel records the
// sender's pid and label of every datagram when it is sent, and makes the
// pidfd and the label control messages when the datagram is read, so
// enabling them now covers datagrams already queued.
func (c *PacketConn) enableFor(want attrs) error {
	s := &c.sys
	if (want&pidfdAttrs == 0 || s.pidfds.Load() || s.noPidfd.Load()) && (want&attrLabel == 0 || s.labels.Load()) {
		return nil
	}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	rc, err := c.conn.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := rc.Control(func(fd uintptr) { err = s.enable(int(fd), want) }); cerr != nil {
		return cerr
	}
	return err
}

// readMsg reads one datagram and verifies its sender. It returns an error
// only when the read itself failed; a datagram that fails verification is
// returned with its rejection.
func (c *PacketConn) readMsg(b []byte, want attrs) (int, *net.UnixAddr, Peer, *RejectError, error) {
	if err := c.enableFor(want); err != nil {
		return 0, nil, Peer{}, nil, c.opError("read", err)
	}
	rb, _ := c.sys.bufs.Get().(*readBuf)
	if rb == nil {
		rb = &readBuf{oob: make([]byte, c.sys.oobSize)}
	}
	defer c.sys.bufs.Put(rb)
	n, oobn, flags, addr, err := c.conn.ReadMsgUnix(b, rb.oob)
	if err != nil {
		return 0, nil, Peer{}, nil, err
	}
	m := parseControl(rb.oob[:oobn])
	defer m.close()
	p := &rb.peer
	*p = Peer{}
	c.sys.sender(&m, flags, want, p)
	if proc := want & pidfdAttrs; proc != 0 && p.errs.cred == nil {
		// A sender that the datagram alone disqualifies costs no /proc
		// read: rules that need only its ids or label first.
		if rej := c.v.earlyReject(p, attrCred|attrLabel); rej != nil {
			return 0, nil, Peer{}, rej, nil
		}
		c.sys.readSender(&m, proc, p)
	}
	rb.ev = evaluation{p: p}
	if rej := c.v.check(&rb.ev); rej != nil {
		return 0, nil, Peer{}, rej, nil
	}
	return n, addr, *p, nil, nil
}

// readBuf is what one read needs besides the caller's buffer, kept
// between reads: the control message buffer, and the Peer the rules see
// (which would otherwise be allocated for every datagram).
type readBuf struct {
	oob  []byte
	peer Peer
	ev   evaluation // applies the rules to peer
}

// sender fills p with what the datagram itself says of its sender, whose
// control messages are m and whose recvmsg flags are flags: the
// credentials, and the label when want has it. readSender reads the rest.
func (s *packetSys) sender(m *control, flags int, want attrs, p *Peer) {
	want |= attrCred
	if m.hasCred {
		// Known even when rejected below, for the report.
		p.PID, p.UID, p.GID = int(m.cred.Pid), int(m.cred.Uid), int(m.cred.Gid)
	}
	switch {
	case flags&unix.MSG_CTRUNC != 0:
		p.fail(want, errors.New("the datagram's control data was truncated (MSG_CTRUNC): its credentials cannot be trusted"))
		return
	case m.err != nil:
		p.fail(want, m.err)
		return
	case !m.hasCred:
		p.fail(want, fmt.Errorf("%w: the datagram carries no SCM_CREDENTIALS", ErrNoCredentials))
		return
	}
	p.known |= attrCred
	p.ovf = ownOverflowIDs()
	if want&attrLabel != 0 {
		p.known |= attrLabel
		if s.labels.Load() {
			p.Label = m.label // none without a security module that labels sockets
		} else {
			p.errs.label = errors.New("the socket does not receive security labels (SO_PASSSEC)")
		}
	}
}

// earlyReject applies the rules that need no more than have, and returns
// the rejection when one of them fails, with the others as not
// evaluated; nil when the rest of the rules must decide.
func (v *verifier) earlyReject(p *Peer, have attrs) *RejectError {
	var failed []RuleError
	for _, r := range v.rules {
		if r.need&^have == 0 {
			if err := r.Check(p); err != nil {
				failed = append(failed, RuleError{Rule: r.name, Err: err})
			}
		}
	}
	if failed == nil {
		return nil
	}
	rej := &RejectError{Peer: *p, Failures: failed}
	for _, r := range v.rules {
		if r.need&^have != 0 {
			rej.NotEvaluated = append(rej.NotEvaluated, r.desc)
		}
	}
	return rej
}

// readSender reads the attributes in want (a subset of pidfdAttrs) of the
// sender through its pidfd: the datagram's SCM_PIDFD, or before Linux 6.5
// one opened from its pid.
func (s *packetSys) readSender(m *control, want attrs, p *Peer) {
	pidfd := m.pidfd
	switch {
	case p.PID <= 0:
		p.fail(want, ErrPIDNotVisible)
		return
	case m.pidfdErr != nil:
		p.fail(want, m.pidfdErr)
		return
	case pidfd < 0 && s.noPidfd.Load():
		var err error
		if pidfd, err = pidfdSentBy(p.PID, m); err != nil {
			p.fail(want, err)
			return
		}
		defer unix.Close(pidfd)
	case pidfd < 0:
		p.fail(want, errors.New("the datagram carries no SCM_PIDFD of its sender"))
		return
	}
	var (
		groups []int
		gErr   error
		pinErr error
	)
	// The groups and the program are read here, the rest by
	// readProcessWith, all within one check of the pidfd. The program
	// is read first, so that a digest is checked to be of the same file.
	pin := func(read func(pid int)) error {
		pinErr = pinnedBy(pidfd, p.PID, func(pid int) {
			if want&attrGroups != 0 {
				groups, gErr = readGroups(pid)
			}
			if want&attrProgram != 0 {
				p.known |= attrProgram
				var stx unix.Statx_t
				var stamp exeStamp
				p.Program, stamp, p.errs.program = readExe(pid, exeStatx, &stx)
				p.exe = stamp.id
			}
			read(pid)
		})
		return pinErr
	}
	if rest := want & procAttrs &^ attrProgram; rest != 0 {
		ctx := context.Background()
		if rest&attrDigest != 0 && s.timeout > 0 {
			// Hashing an executable not seen before stops at the
			// deadline (ErrVerifyTimeout's cause).
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeoutCause(ctx, s.timeout, ErrVerifyTimeout)
			defer cancel()
		}
		readProcessWith(ctx, rest, p, pin)
	} else {
		pin(func(int) {})
	}
	if want&attrProgram != 0 && pinErr != nil {
		p.Program, p.exe, p.errs.program = "", fileID{}, pinErr
	}
	if want&attrGroups != 0 {
		p.known |= attrGroups
		switch {
		case pinErr != nil:
			p.errs.groups = pinErr
		case gErr != nil:
			p.errs.groups = gErr
		default:
			p.Groups = groups
		}
	}
}

// pidfdSentBy opens a pidfd for pid, the sender of the datagram whose
// control messages are m, on a kernel without SCM_PIDFD: the process
// behind the pid must have started by the time the datagram was sent
// (SCM_TIMESTAMPNS), or the pid now belongs to another process. Process
// start times count 10 ms clock ticks and the send time is taken from the
// realtime clock, which can be stepped: this narrows the pid-reuse race to
// about two ticks, it does not close it (SCM_PIDFD does).
func pidfdSentBy(pid int, m *control) (int, error) {
	if !m.hasSent {
		return -1, errors.New("the datagram carries no SCM_TIMESTAMPNS, which pins its sender's pid before Linux 6.5")
	}
	pidfd, err := pidfdByStartTime(pid) // started before now, and pinned
	if err != nil {
		return -1, err
	}
	limit, err := bootTicksAt(m.sent)
	var start uint64
	if err == nil {
		start, err = procStartTime(pid)
	}
	if err == nil {
		// start is the pinned process's only if it still runs now.
		var alive bool
		if alive, err = pidfdAlive(pidfd); err == nil && !alive {
			err = ErrPeerExited
		}
	}
	if err == nil && start > limit+1 {
		err = fmt.Errorf("%w (its pid %d now belongs to a process started after the datagram was sent)", ErrPeerExited, pid)
	}
	if err != nil {
		unix.Close(pidfd)
		return -1, err
	}
	return pidfd, nil
}

// bootTicksAt converts t, a time of the realtime clock in the past, into
// clock ticks since boot, the unit of a process's start time.
func bootTicksAt(t unix.Timespec) (uint64, error) {
	var real, boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &real); err != nil {
		return 0, os.NewSyscallError("clock_gettime", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return 0, os.NewSyscallError("clock_gettime", err)
	}
	at := boot.Nano() - max(real.Nano()-t.Nano(), 0)
	return uint64(max(at, 0)) / 1e7, nil // USER_HZ: 100 ticks a second
}

// readGroups reads the supplementary groups of pid from the Groups line
// of its status file. The caller confirms through a pidfd that pid still
// is the sender.
func readGroups(pid int) ([]int, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/status"
	b, err := readProcFile(name)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, procError(name, err)
	}
	_, line, ok := bytes.Cut(b, []byte("\nGroups:"))
	if !ok {
		return nil, fmt.Errorf("malformed %s: no Groups line", name)
	}
	line, _, _ = bytes.Cut(line, []byte("\n"))
	fields := bytes.Fields(line)
	groups := make([]int, len(fields))
	for i, f := range fields {
		g, err := strconv.ParseUint(string(f), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("malformed %s: Groups line: %w", name, err)
		}
		groups[i] = int(g)
	}
	return groups, nil
}

// control is what the control messages of one datagram carried.
type control struct {
	cred     unix.Ucred
	hasCred  bool
	pidfd    int   // -1 when none
	pidfdErr error // the kernel could not make a pidfd
	label    string
	sent     unix.Timespec // when the datagram was sent, with hasSent
	hasSent  bool
	err      error // the control data is malformed
}

// parseControl reads the control messages in oob, closing at once every
// descriptor passed with SCM_RIGHTS. The caller closes the pidfd with
// close.
func parseControl(oob []byte) control {
	m := control{pidfd: -1}
	for len(oob) > 0 {
		if len(oob) < unix.SizeofCmsghdr {
			m.err = errors.New("malformed control message")
			return m
		}
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		hlen := unix.CmsgLen(0)
		if int(h.Len) < hlen || int(h.Len) > len(oob) {
			m.err = errors.New("malformed control message")
			return m
		}
		data := oob[hlen:h.Len]
		if next := unix.CmsgSpace(int(h.Len) - hlen); next < len(oob) {
			oob = oob[next:]
		} else {
			oob = nil
		}
		if h.Level != unix.SOL_SOCKET {
			continue
		}
		switch h.Type {
		case unix.SCM_RIGHTS:
			for ; len(data) >= 4; data = data[4:] {
				unix.Close(int(*(*int32)(unsafe.Pointer(&data[0]))))
			}
		case unix.SCM_CREDENTIALS:
			if len(data) >= unix.SizeofUcred {
				m.cred = *(*unix.Ucred)(unsafe.Pointer(&data[0]))
				m.hasCred = true
			}
		case unix.SCM_PIDFD:
			if len(data) < 4 {
				break
			}
			fd := int(*(*int32)(unsafe.Pointer(&data[0])))
			switch {
			case fd >= 0 && m.pidfd >= 0:
				unix.Close(fd) // never more than one; keep the first
			case fd >= 0:
				m.pidfd = fd
			default:
				// The kernel puts the error of pidfd creation in the
				// message: the sender has been reaped (6.5 to 6.15).
				m.pidfdErr = fmt.Errorf("%w (SCM_PIDFD: %v)", ErrPeerExited, unix.Errno(-fd))
			}
		case unix.SCM_TIMESTAMPNS:
			if len(data) >= int(unsafe.Sizeof(m.sent)) {
				m.sent = *(*unix.Timespec)(unsafe.Pointer(&data[0]))
				m.hasSent = true
			}
		case unix.SCM_SECURITY:
			for len(data) > 0 && data[len(data)-1] == 0 {
				data = data[:len(data)-1]
			}
			m.label = string(data)
		}
	}
	return m
}

// close closes the pidfd, if any.
func (m *control) close() {
	if m.pidfd >= 0 {
		unix.Close(m.pidfd)
		m.pidfd = -1
	}
}
