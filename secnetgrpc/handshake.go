package secnetgrpc

import (
	"context"
	"errors"
	"net"

	"github.com/secnet/secnet"
	"google.golang.org/grpc/credentials"
)

// clientCreds implements credentials.TransportCredentials for a client
// that answers the server's handshake.
type clientCreds struct {
	d secnet.Dialer
}

// NewClientCredentials returns transport credentials for a client that
// verifies the server as d does: the server must pass d.Rules, then
// d.Handshake answers the server's handshake rule, such as
// secnet.ProveSharedSecret for secnet.SharedSecret:
//
//	d := &secnet.Dialer{Rules: []secnet.Rule{secnet.UID(0)}, Handshake: secnet.ProveSharedSecret(key)}
//	cc, err := grpc.NewClient("unix:///run/myd.sock", grpc.WithTransportCredentials(secnetgrpc.NewClientCredentials(d)))
//
// The handshake runs under the context grpc gives the transport
// handshake, bounded by d.Timeout. A refusal (a wrong key, a server that
// fails the rules) closes the connection and appears in the status of the
// RPCs that needed it. Use the credentials on a client only: their
// ServerHandshake refuses every connection. A client that dials with d
// itself (grpc.WithContextDialer) has answered already and uses
// NewCredentials instead.
func NewClientCredentials(d *secnet.Dialer) credentials.TransportCredentials {
	c := &clientCreds{d: *d}
	c.d.Rules = append([]secnet.Rule(nil), d.Rules...)
	return c
}

// ClientHandshake verifies the server and answers its handshake.
func (c *clientCreds) ClientHandshake(ctx context.Context, _ string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	sc, err := c.d.VerifyConn(ctx, rawConn)
	if err != nil {
		rawConn.Close()
		return nil, nil, err
	}
	return sc, authInfo(sc), nil
}

// ServerHandshake refuses the connection: the credentials are a client's.
func (c *clientCreds) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	rawConn.Close()
	return nil, nil, errors.New("secnetgrpc: credentials from NewClientCredentials are for clients; a server uses NewCredentials")
}

// Info reports "secnet" as the security protocol.
func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

// Clone returns a copy of the credentials.
func (c *clientCreds) Clone() credentials.TransportCredentials {
	return NewClientCredentials(&c.d)
}

// OverrideServerName does nothing, as for NewCredentials.
func (c *clientCreds) OverrideServerName(string) error { return nil }
