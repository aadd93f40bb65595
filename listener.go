package secnet

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// ListenConfig holds the options for creating a verified listener, in the
// manner of net.ListenConfig. The zero value is ready to use.
type ListenConfig struct {
	// Mode, when not zero, is the permission of the socket file. It is set
	// exactly (the process umask does not apply), and the socket is never
	// reachable at its path with wider permissions: it is bound with at
	// most Mode&0700 (only its owner can connect), given its Owner and
	// Group, and then Mode. When zero the file gets what net.Listen would
	// give it: 0777 less the umask. Connecting needs write permission on
	// the file. Linux only: elsewhere Mode, Owner and Group are an error.
	Mode os.FileMode

	// Owner and Group, when not empty, name the user and the group (a
	// name or a numeric id) that own the socket file. They are set before
	// the socket is open to anyone but its owner.
	Owner, Group string

	// Rejected, when not nil, is called with the reasons for each
	// connection that fails verification, after the connection is
	// closed. It runs on the goroutine that called Accept, so it should
	// be quick (log and return).
	Rejected func(*RejectError)

	// Control, when not nil, is called on the listening socket before
	// bind, as net.ListenConfig.Control is.
	Control func(network, address string, c syscall.RawConn) error

	// KeepPidfd makes each accepted *SecureConn keep a pidfd of its peer
	// (one more file descriptor per connection, closed by Close), so
	// that (*SecureConn).Recheck can tell later whether the process that
	// connected still runs, and runs the same executable.
	KeepPidfd bool
}

// Listen announces on the Unix socket address and returns a listener that
// accepts only peers that pass every rule. network is "unix" or
// "unixpacket". An address starting with "@" or "\x00" names a Linux
// abstract socket, which has no file and so no permissions: the rules are
// its only protection, and Mode, Owner and Group cannot be used with it.
// A path may have up to 107 bytes (sun_path holds 108 with the NUL).
//
// The socket is bound at address itself, so Addr, every connection's
// LocalAddr and the client's RemoteAddr name it. A socket file left at
// address by a server that is gone (nothing listens on it) is replaced;
// any other existing file is an error and is left in place, and a
// symlink there is never followed. Close removes the socket file if it
// is still the one Listen created.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string, rules ...Rule) (*Listener, error) {
	v := newVerifier(rules)
	if v.err != nil {
		return nil, listenError(network, address, v.err)
	}
	inner, file, err := listenUnix(ctx, lc, network, address)
	if err != nil {
		return nil, err
	}
	v.keep = lc.KeepPidfd
	if len(v.hs) > 0 {
		v.server = listenerServer(inner)
	}
	return &Listener{inner: inner, v: v, rejected: lc.Rejected, file: file}, nil
}

// Listen is (*ListenConfig).Listen with a zero ListenConfig and a
// background context: a drop-in replacement for net.Listen("unix", ...)
// that takes the rules every peer must pass.
func Listen(network, address string, rules ...Rule) (*Listener, error) {
	var lc ListenConfig
	return lc.Listen(context.Background(), network, address, rules...)
}

// NewListener returns a listener that accepts, from inner, only the
// connections whose peers pass every rule. inner can come from anywhere: a
// socket inherited from systemd, a test. Connections that are not Unix
// sockets are rejected. If the rules are invalid (see Rule.Err), Accept
// returns that error and accepts nothing.
func NewListener(inner net.Listener, rules ...Rule) *Listener {
	v := newVerifier(rules)
	if len(v.hs) > 0 {
		v.server = listenerServer(inner)
	}
	return &Listener{inner: inner, v: v}
}

// Listener is a net.Listener that hands out only verified connections.
// Accept returns each as a *SecureConn typed as net.Conn; AcceptSecure
// returns it with its type.
type Listener struct {
	inner    net.Listener
	v        verifier
	rejected func(*RejectError)
	file     *socketFile // the socket file Listen created, or nil

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// SetRejected sets the function called for each rejected connection (see
// ListenConfig.Rejected). Call it before the first Accept.
func (l *Listener) SetRejected(fn func(*RejectError)) { l.rejected = fn }

// Accept waits for a connection whose peer passes every rule and returns
// it as a *SecureConn. Connections that fail are closed, reported to the
// Rejected function, and never returned: Accept goes on waiting. Errors
// of the inner listener (EMFILE, ...) are returned unchanged, so servers
// back off as they do with a plain listener. After Close, Accept returns
// an error that satisfies errors.Is(err, net.ErrClosed).
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptSecure()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptSecure is Accept with the connection's own type.
func (l *Listener) AcceptSecure() (*SecureConn, error) {
	if l.v.err != nil {
		return nil, &net.OpError{Op: "accept", Net: l.inner.Addr().Network(), Addr: l.inner.Addr(), Err: l.v.err}
	}
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.closed.Load() && !errors.Is(err, net.ErrClosed) {
				err = &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
			}
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), defaultHandshakeTimeout)
		sc, rej := l.v.verify(ctx, c)
		cancel()
		if rej == nil {
			return sc, nil
		}
		c.Close()
		if l.rejected != nil {
			l.rejected(rej)
		}
	}
}

// Close stops listening and removes the socket file Listen created (if it
// is still the same file). A blocked Accept returns. Close is idempotent:
// calls after the first return nil. Connections already accepted stay open.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		l.closeErr = l.inner.Close()
		if l.file != nil {
			l.file.remove()
		}
	})
	return l.closeErr
}

// Addr returns the listener's address: the path given to Listen.
func (l *Listener) Addr() net.Addr {
	if l.file != nil {
		return l.file.addr
	}
	return l.inner.Addr()
}

func listenError(network, address string, err error) error {
	return &net.OpError{Op: "listen", Net: network, Addr: &net.UnixAddr{Name: address, Net: network}, Err: err}
}
