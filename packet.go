package secnet

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// ListenPacket announces on the Unix datagram socket address ("unixgram")
// and returns a connection that delivers only datagrams whose sender
// passes every rule. It is (*ListenConfig).ListenPacket with a zero
// ListenConfig and a background context: a drop-in replacement for
// net.ListenPacket("unixgram", path).
func ListenPacket(network, address string, rules ...Rule) (*PacketConn, error) {
	var lc ListenConfig
	return lc.ListenPacket(context.Background(), network, address, rules...)
}

// ListenPacket announces on the Unix datagram socket address and returns
// a connection that delivers only datagrams whose sender passes every
// rule. network must be "unixgram". The socket file is made as Listen
// makes it: Mode, Owner and Group apply before anyone can send to it, a
// stale socket file is replaced and any other file is left in place; an
// address starting with "@" names an abstract socket, which has no file.
// Close removes the socket file.
//
// The kernel attaches the sender's credentials to every datagram (see
// PacketConn): the rules are applied to each datagram when the
// application reads it, on the reading goroutine. Of ListenConfig,
// ListenPacket uses Mode, Owner, Group, Rejected and Control, and
// VerifyTimeout to bound the hashing of an executable for a ProgramDigest
// rule (the datagram is then rejected with ErrVerifyTimeout); the other
// fields concern connections. Handshake rules need a connection and are
// refused.
func (lc *ListenConfig) ListenPacket(ctx context.Context, network, address string, rules ...Rule) (*PacketConn, error) {
	v := newVerifier(rules)
	if v.err == nil && len(v.hs) > 0 {
		v.err = fmt.Errorf("secnet: rule %s talks to the peer over a connection; a datagram socket has none", v.hs[0].desc)
	}
	if v.err != nil {
		return nil, listenError(network, address, v.err)
	}
	return listenPacket(ctx, lc, network, address, v)
}

// PacketConn is a Unix datagram socket that delivers only datagrams whose
// sender passed every rule. It implements net.PacketConn.
//
// For datagram sockets SO_PEERCRED means nothing; the kernel instead
// attaches the sender's identity to each datagram, and PacketConn asks
// for it: SCM_CREDENTIALS (pid, uid, gid) always, SCM_PIDFD (a pidfd of
// the sender, Linux 6.5) when a rule needs the sender's process, and
// SCM_SECURITY (its LSM label) when a rule needs the label. Each datagram
// is verified when the application reads it, never ahead of time:
//
//   - UID, GID, User and SameUser see the ids the kernel attached when the
//     datagram was sent. These are the sender's REAL uid and gid, where a
//     stream socket's SO_PEERCRED gives the effective ones: a setuid
//     program sends with the uid of the user who ran it. (A sender may
//     also claim its effective or saved id explicitly, and a sender with
//     CAP_SETUID, CAP_SETGID or CAP_SYS_ADMIN any id or pid.) They pass
//     even when the sender has exited since.
//   - InGroup and Group also need the supplementary groups, which are not
//     in the message: they are read from /proc/<pid>/status of the sender
//     through its pidfd, as they are when the datagram is read.
//   - Program, ProgramDigest, Cgroup, Unit, SameNamespaces and OnHost
//     read /proc/<pid> of the sender through its pidfd when the datagram
//     is read: they see the process as it is then (a sender that called
//     execve after sending is seen with its new executable), and a sender
//     that has exited fails them with ErrPeerExited. Before Linux 6.5 the
//     pidfd comes from pidfd_open of the pid, and the process must have
//     started no later than the datagram was sent (SCM_TIMESTAMPNS), which
//     narrows the pid-reuse race to about two clock ticks but does not
//     close it. (Such a kernel stamps every datagram with its send time,
//     whatever the rules, so that ReadFromPeer can pin its sender too.)
//   - Label sees the label the kernel attached at send time.
//
// The rules run on the goroutine that reads, one datagram at a time: a
// ProgramDigest rule hashes an executable it has not seen before (or
// that changed) there, which delays the datagrams behind it.
//
// Rules that need only what the datagram carries (the ids, the label) are
// applied first: a sender they reject costs no /proc read, and the other
// rules are listed in RejectError.NotEvaluated. A datagram whose control
// data was truncated (MSG_CTRUNC), or that carries no credentials, is
// rejected. File descriptors passed with
// SCM_RIGHTS are closed, in accepted and rejected datagrams alike:
// PacketConn never hands descriptors to the application. Rejected
// datagrams are dropped and reported to ListenConfig.Rejected; the read
// goes on with the next datagram, until the read deadline.
//
// A PacketConn is safe for concurrent use, as a *net.UnixConn is.
type PacketConn struct {
	conn     *net.UnixConn
	v        verifier
	rejected func(*RejectError)
	file     *socketFile // the socket file ListenPacket created, or nil
	sys      packetSys   // what the operating system's reader keeps

	closeOnce sync.Once
	closeErr  error
}

// ReadFrom reads the next datagram whose sender passes every rule into b
// and returns the number of bytes copied and the sender's address (nil
// when the sender's socket is not bound to a name). Datagrams that fail
// are dropped and reported to the Rejected function; ReadFrom goes on
// waiting. It reads only what the rules need.
func (c *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, _, err := c.read(b, c.v.need)
	if addr == nil {
		return n, nil, err
	}
	return n, addr, err
}

// ReadFromPeer is ReadFrom that also returns the sender's identity: what
// (*SecureConn).Peer gives for a connection (everything but the program
// digest, unless a rule needed it), read when the datagram is read, from
// the datagram's credentials and through the sender's pidfd. Reading the
// process attributes costs /proc reads for each datagram; ReadFrom reads
// only what the rules need. Attributes that could not be read are
// reported by Peer.Err, as for a connection.
func (c *PacketConn) ReadFromPeer(b []byte) (n int, addr net.Addr, peer Peer, err error) {
	n, ua, peer, err := c.read(b, c.v.need|attrAll)
	if ua != nil {
		addr = ua
	}
	return n, addr, peer, err
}

// read returns the next datagram whose sender passes the rules, with the
// attributes in want read.
func (c *PacketConn) read(b []byte, want attrs) (int, *net.UnixAddr, Peer, error) {
	if c.v.err != nil {
		return 0, nil, Peer{}, c.opError("read", c.v.err)
	}
	for {
		n, addr, p, rej, err := c.readMsg(b, want)
		if err != nil {
			return 0, nil, Peer{}, err
		}
		if rej == nil {
			return n, addr, p, nil
		}
		if c.rejected != nil {
			c.rejected(rej)
		}
	}
}

// SetRejected sets the function called for each rejected datagram (see
// ListenConfig.Rejected). It runs on the goroutine that called ReadFrom
// or ReadFromPeer, so with several readers it may run concurrently. Call
// it before the first read.
func (c *PacketConn) SetRejected(fn func(*RejectError)) { c.rejected = fn }

// WriteTo writes a datagram to addr, as (*net.UnixConn).WriteTo does.
// Replies are not verified: the rules apply to what is read.
func (c *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	return c.conn.WriteTo(b, addr)
}

// WriteToUnix writes a datagram to addr, as (*net.UnixConn).WriteToUnix
// does.
func (c *PacketConn) WriteToUnix(b []byte, addr *net.UnixAddr) (int, error) {
	return c.conn.WriteToUnix(b, addr)
}

// Close closes the socket and removes the socket file ListenPacket
// created (if it is still the same file). A blocked read returns an error
// that satisfies errors.Is(err, net.ErrClosed). Close is idempotent:
// calls after the first return nil.
func (c *PacketConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.conn.Close()
		if c.file != nil {
			c.file.remove()
		}
	})
	return c.closeErr
}

// LocalAddr returns the address the socket is bound to.
func (c *PacketConn) LocalAddr() net.Addr {
	if c.file != nil {
		return c.file.addr
	}
	return c.conn.LocalAddr()
}

// SetDeadline sets the read and write deadlines, as for a *net.UnixConn.
// A read that skips rejected datagrams still ends at the read deadline.
func (c *PacketConn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *PacketConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *PacketConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// SyscallConn returns the raw socket, as (*net.UnixConn).SyscallConn
// does. Reading from it directly bypasses verification.
func (c *PacketConn) SyscallConn() (syscall.RawConn, error) { return c.conn.SyscallConn() }

func (c *PacketConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "unixgram", Addr: c.LocalAddr(), Err: err}
}

// compile-time check
var _ net.PacketConn = (*PacketConn)(nil)

// listenUnixgram binds the datagram socket for lc (see bindUnix).
// control runs on the socket before bind, after lc.Control.
func listenUnixgram(ctx context.Context, lc *ListenConfig, network, address string,
	control func(network, address string, c syscall.RawConn) error) (*net.UnixConn, *socketFile, error) {
	if network != "unixgram" {
		return nil, nil, listenError(network, address, net.UnknownNetworkError(network))
	}
	s, file, err := bindUnix(ctx, lc, network, address, control, func(nlc *net.ListenConfig) (io.Closer, error) {
		return nlc.ListenPacket(ctx, network, address)
	})
	if err != nil {
		return nil, nil, err
	}
	return s.(*net.UnixConn), file, nil
}
