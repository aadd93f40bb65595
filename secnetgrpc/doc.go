// Package secnetgrpc verifies the processes at both ends of gRPC
// connections over Unix sockets, with the rules of package secnet.
//
// It is a module of its own (github.com/secnet/secnet/secnetgrpc), so that
// programs that import secnet do not depend on grpc-go.
//
// NewCredentials returns a credentials.TransportCredentials. On a server
// (grpc.Creds) it verifies every client, whether the listener is a
// *secnet.Listener (its connections were verified already; the rules of
// the credentials are applied on top) or a plain Unix listener; handlers
// get the client's identity with PeerFromContext. On a client
// (grpc.WithTransportCredentials) it verifies the server during the
// handshake, so an RPC never reaches a server that fails the rules, such
// as one that took over the socket path as another user.
//
// A server that also requires proof of a shared secret lists
// secnet.SharedSecret among the rules of NewCredentials (or of its secnet
// listener, not both); its clients answer with NewClientCredentials, made
// from a secnet.Dialer whose Handshake is secnet.ProveSharedSecret.
//
// UnaryServerInterceptor and StreamServerInterceptor apply further rules
// per method:
//
//	creds := secnetgrpc.NewCredentials(secnet.Anyone())
//	policy := secnetgrpc.MethodRules{
//		"/myd.v1.Admin/*":      {secnet.UID(0)},
//		"/myd.v1.Jobs/Restart": {secnet.Group("operators")},
//	}
//	srv := grpc.NewServer(grpc.Creds(creds),
//		grpc.UnaryInterceptor(secnetgrpc.UnaryServerInterceptor(policy)),
//		grpc.StreamInterceptor(secnetgrpc.StreamServerInterceptor(policy)))
package secnetgrpc
