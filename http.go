package secnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
)

// connKey is the context key under which ConnContext stores the
// connection.
type connKey struct{}

// ConnContext is a function for http.Server.ConnContext. It records the
// verified connection (see PeerOf for the wrappers it looks through) in
// the context of every request served on it, so that handlers can call
// PeerFromContext and routes can be guarded with Require:
//
//	ln, _ := secnet.Listen("unix", "/run/myd.sock", secnet.Anyone())
//	srv := &http.Server{Handler: h, ConnContext: secnet.ConnContext}
//	srv.Serve(ln)
//
// It reads nothing from the peer: the identity is read when a handler
// first asks for it. A connection that is not a *SecureConn leaves the
// context as it is.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if sc := secureConnOf(c); sc != nil {
		return context.WithValue(ctx, connKey{}, sc)
	}
	return ctx
}

// PeerFromContext returns the identity of the client of the request whose
// context is ctx (r.Context() in a handler). It reports false when the
// server does not use ConnContext or the connection was not verified by
// secnet.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	sc, ok := ctx.Value(connKey{}).(*SecureConn)
	if !ok {
		return Peer{}, false
	}
	return sc.Peer(), true
}

// Require returns a middleware that lets a request through to the next
// handler only when its client passes every rule, in addition to the
// rules of the listener:
//
//	mux.Handle("POST /reload", secnet.Require(secnet.UID(0))(reload))
//
// Any other request gets 403 Forbidden with a body that names every rule
// that failed and why, e.g. "Forbidden: secnet: rejected peer pid=42
// uid=1000 gid=1000: uid: peer uid 1000 is not 0". A request whose
// connection carries no identity (the server does not set
// http.Server.ConnContext to ConnContext, or its listener is not a secnet
// listener) is refused with 403 too. If the rules are invalid (see
// Rule.Err), or include a handshake rule (which belongs to the listener),
// every request gets 500 Internal Server Error.
//
// The rules may need parts of the identity that the listener's rules did
// not (a Program rule behind a UID listener): they are read on the first
// request of a connection and kept for the next ones.
func Require(rules ...Rule) func(http.Handler) http.Handler {
	v := newVerifier(rules)
	if v.err == nil && len(v.hs) > 0 {
		v.err = fmt.Errorf("secnet: Require cannot run handshake rule %s: a request arrives after the connection's handshake; give it to the listener", v.hs[0].desc)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if v.err != nil {
				http.Error(w, "Internal Server Error: "+v.err.Error(), http.StatusInternalServerError)
				return
			}
			sc, ok := r.Context().Value(connKey{}).(*SecureConn)
			if !ok {
				http.Error(w, "Forbidden: secnet: the client's identity is unknown "+
					"(the server must serve a secnet listener with http.Server.ConnContext set to secnet.ConnContext)",
					http.StatusForbidden)
				return
			}
			if rej := v.checkConn(sc); rej != nil {
				http.Error(w, "Forbidden: "+rej.Error(), http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
