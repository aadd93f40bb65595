package secnet

import (
	"context"
	"fmt"
	"net"
	"time"
)

// Dialer connects to Unix sockets and verifies the server: after
// connecting it reads the identity of the process that created the
// listening socket (SO_PEERCRED on a connected client socket reports the
// listener's credentials as of its listen()) and closes the connection
// with a *RejectError unless the server passes every rule. This protects a
// client from a socket path taken over by another user.
type Dialer struct {
	// Rules the server must pass. A Dialer without rules refuses to dial
	// (use Anyone() to accept any server explicitly).
	Rules []Rule

	// Timeout bounds the connect, as net.Dialer.Timeout does, and, with a
	// Handshake, the connect and the handshake together. Zero means no
	// timeout beyond the context's (and DefaultVerifyTimeout for a
	// Handshake when the context has no deadline either).
	Timeout time.Duration

	// Handshake, when not nil, runs after the server passed Rules and
	// before DialSecure returns, to answer a server's handshake rule
	// (ProveSharedSecret answers SharedSecret). Its error, wrapped in a
	// *net.OpError, is Dial's; the connection is then closed. ctx is
	// Dial's context, bounded by Timeout (the connect and the handshake
	// together), or by DefaultVerifyTimeout when neither sets a deadline; the
	// connection's deadline follows it while Handshake runs and is
	// cleared afterwards.
	Handshake func(ctx context.Context, c *SecureConn) error

	// KeepPidfd makes the *SecureConn keep the pidfd of the server
	// process that its verification opened, and a file of /proc/<pid>
	// that pins the server's memory map (two more file descriptors,
	// closed by Close), so that (*SecureConn).Recheck can tell later
	// whether it still runs, and has not called execve.
	KeepPidfd bool
}

// DialContext connects to address on the named network ("unix" or
// "unixpacket") and verifies the server. The connection is a *SecureConn
// typed as net.Conn, so the method fits where a dial function is expected:
//
//	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
//		return d.DialContext(ctx, "unix", "/run/myd.sock")
//	}}
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.DialSecure(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialSecure is DialContext with the connection's own type.
func (d *Dialer) DialSecure(ctx context.Context, network, address string) (*SecureConn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Addr: &net.UnixAddr{Name: address, Net: network}, Err: err}
	}
	v, err := d.verifier()
	if err != nil {
		return nil, opErr(err)
	}
	if network != "unix" && network != "unixpacket" {
		return nil, opErr(net.UnknownNetworkError(network))
	}
	ctx, cancel := d.context(ctx)
	defer cancel()
	nd := net.Dialer{Timeout: d.Timeout}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	sc, err := d.verify(ctx, &v, c)
	if err != nil {
		c.Close()
		return nil, opErr(err)
	}
	return sc, nil
}

// VerifyConn verifies the server at the other end of c, a connection
// dialed elsewhere (by a gRPC transport, say), as DialSecure does once it
// has connected: the server must pass Rules, then Handshake runs, under
// ctx bounded as for DialSecure. c must be a *net.UnixConn, or a
// *SecureConn that has not run the handshake yet. It returns a
// *RejectError, or the error of Handshake; it never closes c.
func (d *Dialer) VerifyConn(ctx context.Context, c net.Conn) (*SecureConn, error) {
	v, err := d.verifier()
	if err != nil {
		return nil, err
	}
	ctx, cancel := d.context(ctx)
	defer cancel()
	return d.verify(ctx, &v, c)
}

func (d *Dialer) verifier() (verifier, error) {
	v := newVerifier(d.Rules)
	v.keep = d.KeepPidfd
	if v.err == nil && len(v.hs) > 0 {
		v.err = fmt.Errorf("secnet: handshake rule %s in Dialer.Rules: a client answers a server's handshake with Dialer.Handshake", v.hs[0].desc)
	}
	return v, v.err
}

// context bounds ctx for a dial with a handshake: by Timeout, or by
// defaultHandshakeTimeout when ctx has no deadline.
func (d *Dialer) context(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); d.Handshake == nil || (d.Timeout == 0 && ok) {
		return ctx, func() {}
	}
	timeout := d.Timeout
	if timeout == 0 {
		timeout = defaultHandshakeTimeout
	}
	return context.WithTimeout(ctx, timeout)
}

// verify applies v to c and runs the handshake. On failure a *SecureConn
// made here is released (its pidfd closed), c is left open.
func (d *Dialer) verify(ctx context.Context, v *verifier, c net.Conn) (*SecureConn, error) {
	var sc *SecureConn
	if s, ok := c.(*SecureConn); ok {
		if rej := v.checkConn(s); rej != nil {
			return nil, rej
		}
		sc = s
	} else {
		var rej *RejectError
		if sc, rej = v.verify(ctx, c); rej != nil {
			return nil, rej
		}
	}
	if d.Handshake != nil {
		if err := runHandshake(ctx, sc, "Dialer.Handshake", d.Handshake, true); err != nil {
			if sc != c && sc.held != nil {
				sc.held.close()
			}
			return nil, err
		}
	}
	return sc, nil
}

// Dial connects to the Unix socket address and verifies that the server
// passes every rule; see Dialer.
func Dial(network, address string, rules ...Rule) (*SecureConn, error) {
	d := Dialer{Rules: rules}
	return d.DialSecure(context.Background(), network, address)
}
