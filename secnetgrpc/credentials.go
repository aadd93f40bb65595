package secnetgrpc

import (
	"context"
	"net"
	"slices"

	"github.com/secnet/secnet"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AuthType is what AuthInfo.AuthType returns and Info reports as the
// security protocol.
const AuthType = "secnet"

// AuthInfo is the credentials.AuthInfo of a connection verified by
// secnet: the identity of the process at the other end. On a server it is
// the client; on a client, the server (the process that created the
// listening socket).
type AuthInfo struct {
	credentials.CommonAuthInfo

	// Peer is the identity of the other end, read in full during the
	// handshake.
	Peer secnet.Peer
}

// AuthType returns "secnet".
func (AuthInfo) AuthType() string { return AuthType }

// transportCreds implements credentials.TransportCredentials.
type transportCreds struct {
	rules []secnet.Rule
}

// NewCredentials returns transport credentials that accept a connection
// only when the process at the other end passes every rule. Use them on a
// server with grpc.Creds and on a client with
// grpc.WithTransportCredentials; connections must be Unix sockets.
//
// Like secnet.Listen, the credentials need at least one rule
// (secnet.Anyone() accepts any local process explicitly); without one, or
// with an invalid rule, every handshake fails with the reason.
//
// The security level reported to grpc is PrivacyAndIntegrity, as grpc's
// own local credentials report for Unix sockets: the traffic does not
// leave the kernel, so per-RPC credentials that require transport
// security can be sent.
func NewCredentials(rules ...secnet.Rule) credentials.TransportCredentials {
	return &transportCreds{rules: slices.Clone(rules)}
}

// ServerHandshake verifies the client. rawConn is a *secnet.SecureConn
// when the server serves a *secnet.Listener, or a *net.UnixConn; anything
// else is refused. A refused connection is closed. Handshake rules among
// the rules (secnet.SharedSecret) run here, after the others passed, also
// on a *secnet.SecureConn: put a handshake either in the listener's rules
// or in the credentials', not in both.
func (c *transportCreds) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.handshake(rawConn)
}

// ClientHandshake verifies the server: the process that created the
// listening socket. rawConn is a *net.UnixConn (the target "unix:///path"
// dials one) or a *secnet.SecureConn (from a secnet.Dialer given to
// grpc.WithContextDialer). A refused connection is closed, and the error,
// a *secnet.RejectError, appears in the status of the RPCs that needed the
// connection.
//
// A handshake rule (secnet.SharedSecret) among the rules is refused on a
// client: a client answers a server's handshake with NewClientCredentials.
func (c *transportCreds) ClientHandshake(ctx context.Context, _ string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	d := secnet.Dialer{Rules: c.rules}
	sc, err := d.VerifyConn(ctx, rawConn)
	if err != nil {
		rawConn.Close()
		return nil, nil, err
	}
	return sc, authInfo(sc), nil
}

func (c *transportCreds) handshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc, err := secnet.Verify(rawConn, c.rules...)
	if err != nil {
		rawConn.Close()
		return nil, nil, err
	}
	return sc, authInfo(sc), nil
}

func authInfo(sc *secnet.SecureConn) AuthInfo {
	return AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		Peer:           sc.Peer(),
	}
}

// Info reports "secnet" as the security protocol.
func (c *transportCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

// Clone returns a copy of the credentials.
func (c *transportCreds) Clone() credentials.TransportCredentials {
	return &transportCreds{rules: slices.Clone(c.rules)}
}

// OverrideServerName does nothing: a Unix socket has no server name to
// check. grpc no longer calls it.
func (c *transportCreds) OverrideServerName(string) error { return nil }

// PeerFromContext returns the identity of the other end of the
// connection of an RPC: in a server handler, the client. It reports false
// when the connection was not made with NewCredentials.
func PeerFromContext(ctx context.Context) (secnet.Peer, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return secnet.Peer{}, false
	}
	return PeerOf(p.AuthInfo)
}

// PeerOf returns the identity carried by the AuthInfo of a connection
// made with NewCredentials, for example the server's on a client:
//
//	var p peer.Peer
//	_, err := client.Check(ctx, req, grpc.Peer(&p))
//	server, ok := secnetgrpc.PeerOf(p.AuthInfo)
func PeerOf(ai credentials.AuthInfo) (secnet.Peer, bool) {
	switch a := ai.(type) {
	case AuthInfo:
		return a.Peer, true
	case *AuthInfo:
		if a != nil {
			return a.Peer, true
		}
	}
	return secnet.Peer{}, false
}
