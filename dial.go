package secnet

import (
	"context"
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
	if v.err != nil {
		return nil, opErr(v.err)
	}
	if network != "unix" && network != "unixpacket" {
		return nil, opErr(net.UnknownNetworkError(network))
	}
	nd := net.Dialer{Timeout: d.Timeout}
	c, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	sc, rej := v.verify(ctx, c)
	if rej != nil {
		c.Close()
		return nil, opErr(rej)
	}
	return sc, nil
}

// Dial connects to the Unix socket address and verifies that the server
// passes every rule; see Dialer.
func Dial(network, address string, rules ...Rule) (*SecureConn, error) {
	d := Dialer{Rules: rules}
	return d.DialSecure(context.Background(), network, address)
}
