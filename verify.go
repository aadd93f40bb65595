package secnet

import (
	"context"
	"net"
)

// Verify checks the peer of a connection that was accepted or dialed
// without secnet, and returns it as a *SecureConn when the peer passes
// every rule. c must be a *net.UnixConn or a *SecureConn; for a
// *SecureConn, which was verified already, the rules are applied to its
// identity (reading what they need that was not read yet) and c itself is
// returned. Anything else, including a wrapper such as a *tls.Conn, is
// rejected: the returned connection must be the one the peer talks to.
//
// Verify never closes c. When it fails (with a *RejectError, or the error
// of invalid rules), the caller closes c.
//
// Verify lets code that receives raw connections from elsewhere, such as a
// gRPC transport handshake or a connection passed by another process,
// apply rules to them.
//
// Handshake rules (see Handshake) run after the others passed, also on a
// *SecureConn accepted earlier, within DefaultVerifyTimeout (past it
// they fail with ErrVerifyTimeout); VerifyContext takes
// the deadline from a context instead.
func Verify(c net.Conn, rules ...Rule) (*SecureConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultHandshakeTimeout)
	defer cancel()
	return VerifyContext(ctx, c, rules...)
}

// VerifyContext is Verify with the handshake rules running under ctx:
// its deadline bounds them, and cancelling it stops them. A ctx without a
// deadline lets a handshake wait for the peer for as long as it likes.
func VerifyContext(ctx context.Context, c net.Conn, rules ...Rule) (*SecureConn, error) {
	v := newVerifier(rules)
	if v.err != nil {
		return nil, v.err
	}
	if sc, ok := c.(*SecureConn); ok {
		if rej := v.checkConn(sc); rej != nil {
			return nil, v.skipHandshakes(rej)
		}
		if rej := v.handshake(ctx, sc); rej != nil {
			return nil, rej
		}
		return sc, nil
	}
	sc, rej := v.verify(ctx, c)
	if rej != nil {
		return nil, rej
	}
	return sc, nil
}
