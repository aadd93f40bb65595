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

	// Timeout bounds the connect, as net.Dialer.Timeout does. Zero means
	// no timeout beyond the context's.
	Timeout time.Duration

	// Handshake, when not nil, runs after the server passed Rules and
	// before DialSecure returns, to answer a server's handshake rule
	// (ProveSharedSecret answers SharedSecret). Its error, wrapped in a
	// *net.OpError, is Dial's; the connection is then closed. ctx is
	// Dial's context, bounded by Timeout (the connect and the handshake
	// together), or by 10 seconds when neither sets a deadline; the
	// connection's deadline follows it while Handshake runs and is
	// cleared afterwards.
	Handshake func(ctx context.Context, c *SecureConn) error

	// KeepPidfd makes the *SecureConn keep a pidfd of the server process
	// (one more file descriptor, closed by Close), so that
	// (*SecureConn).Recheck can tell later whether it still runs, and
	// runs the same executable.
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
	v := newVerifier(d.Rules)
	v.keep = d.KeepPidfd
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Addr: &net.UnixAddr{Name: address, Net: network}, Err: err}
	}
	if v.err == nil && len(v.hs) > 0 {
		v.err = fmt.Errorf("secnet: handshake rule %s in Dialer.Rules: a client answers a server's handshake with Dialer.Handshake", v.hs[0].desc)
	}
	if v.err != nil {
		return nil, opErr(v.err)
	}
	if network != "unix" && network != "unixpacket" {
		return nil, opErr(net.UnknownNetworkError(network))
	}
	nd := net.Dialer{Timeout: d.Timeout}
	if _, ok := ctx.Deadline(); d.Handshake != nil && (d.Timeout > 0 || !ok) {
		timeout := d.Timeout
		if timeout == 0 {
			timeout = defaultHandshakeTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	sc, rej := v.verify(ctx, c)
	if rej != nil {
		c.Close()
		return nil, opErr(rej)
	}
	if d.Handshake != nil {
		if err := runHandshake(ctx, sc, d.Handshake); err != nil {
			sc.Close()
			return nil, opErr(err)
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
