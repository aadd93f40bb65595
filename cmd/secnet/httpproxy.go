package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/policy"
)

// httpProxy serves HTTP/1.1 on verified connections and forwards each
// request that a route allows to the upstream, with
// httputil.ReverseProxy. Every request is decided on its own, including
// each request of a kept-alive connection, and logged with the peer, the
// route that decided and the outcome.
type httpProxy struct {
	current func() *httpPolicy                          // of the policy in force
	dial    func(ctx context.Context) (net.Conn, error) // to the upstream
	log     *slog.Logger
	rp      *httputil.ReverseProxy
	srv     *http.Server
	queue   *connQueue
	served  chan struct{} // closed when srv.Serve has returned
}

// httpPolicy is what the HTTP proxy decides requests by: the routes of
// a version of the policy, and its [[rule]] tables, which every client
// must pass before any route is looked at. A connection is checked
// against the rules of the version in force when it was accepted; a
// request that comes after a reload has replaced that version is checked
// against the new version's rules first, so that a client the new rules
// shut out gets nothing more on a connection it kept open.
type httpPolicy struct {
	router *policy.Router // nil: the version has no routes, and every request is refused
	rules  []secnet.Rule
}

// Timeouts of the HTTP server: a client has readHeaderTimeout to send a
// request's header, and a kept-alive connection with no request in
// flight is closed after idleTimeout.
const (
	readHeaderTimeout = time.Minute
	idleTimeout       = 5 * time.Minute
)

// newHTTPProxy returns a proxy that forwards the requests the routes of
// current() allow over connections from dial; current is called for each
// request, so that a reloaded policy applies from the next request on.
// It serves the connections passed to serveConn until shutdown.
// idle, when not 0, replaces idleTimeout.
func newHTTPProxy(current func() *httpPolicy, dial func(ctx context.Context) (net.Conn, error), log *slog.Logger, idle time.Duration) *httpProxy {
	h := &httpProxy{current: current, dial: dial, log: log, queue: newConnQueue(), served: make(chan struct{})}
	h.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The path and Host header are the client's, unchanged; so
			// is the query, less parameters that do not parse.
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "upstream"
		},
		Transport:      linkTransport{},
		BufferPool:     copyBuffers{},
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.upstreamError,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	h.srv = &http.Server{
		Handler:           h,
		ConnContext:       withHTTPConn,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       cmp.Or(idle, idleTimeout),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(h.served)
		h.srv.Serve(h.queue)
	}()
	return h
}

// serveConn serves HTTP on c, whose peer passed the rules of passed, and
// returns when c is closed: by the server (the client went away, or an
// idle or kept-alive connection was closed), after an upgraded
// connection ended, or by the caller closing c.
func (h *httpProxy) serveConn(c *secnet.SecureConn, passed *httpPolicy) {
	hc := &httpConn{SecureConn: c, done: make(chan struct{})}
	hc.passed.Store(passed)
	hc.up.dial = h.dial
	if !h.queue.put(hc) {
		c.Close()
		return
	}
	<-hc.done
}

// shutdown stops serving new connections and closes the idle ones;
// requests in flight finish, and their connections are closed after the
// response.
func (h *httpProxy) shutdown() {
	h.queue.Close()
	h.srv.SetKeepAlivesEnabled(false)
	<-h.served
}

// ServeHTTP decides r by the routes and forwards it if allowed.
func (h *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c, _ := r.Context().Value(httpConnKey{}).(*httpConn)
	aw := &auditWriter{ResponseWriter: w}
	var (
		route, pattern string
		why            string
	)
	pol := h.current()
	switch {
	case c == nil: // not served by serveConn: cannot happen
		why = "the client's identity is unknown"
	case pol.router == nil:
		why = "the policy in force has no routes"
	case c.passed.Load() != pol:
		// A reload since the connection was checked: the new rules first.
		if err := checkRules(pol.rules, c.SecureConn); err != nil {
			why = fmt.Sprintf("the policy's [[rule]] tables refuse this client since the policy was reloaded: %s", err)
			break
		}
		c.passed.Store(pol)
		fallthrough
	default:
		var m *policy.Route
		if m, pattern, why = pol.router.Decide(r); m != nil {
			route = m.Name
			if err := checkRules(m.Rules, c.SecureConn); err != nil {
				why = fmt.Sprintf("route %q (pattern %q) refuses this client: %s", route, pattern, err)
			}
		}
	}
	if why != "" {
		writeRefusal(aw, http.StatusForbidden, fmt.Sprintf("secnet: %s %q is refused: %s", r.Method, r.URL.EscapedPath(), why))
	} else {
		if r.ContentLength != 0 {
			r.Body = &countingBody{ReadCloser: r.Body, n: &aw.in}
		}
		st := &reqState{w: aw, link: &c.up, upgrade: upgradeType(r.Header) != ""}
		h.rp.ServeHTTP(aw, r.WithContext(context.WithValue(r.Context(), reqStateKey{}, st)))
	}
	h.audit(r, c, aw, route, pattern, why, start)
}

// audit logs one request: who, what, which route decided, the outcome.
func (h *httpProxy) audit(r *http.Request, c *httpConn, aw *auditWriter, route, pattern, why string, start time.Time) {
	level, decision := slog.LevelInfo, "allowed"
	if why != "" {
		level, decision = slog.LevelWarn, "refused"
	}
	if !h.log.Enabled(r.Context(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	if c != nil {
		attrs = append(attrs, c.peerAttr())
	}
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.String("route", route),
		slog.String("pattern", pattern),
		slog.String("decision", decision),
		slog.Int("status", aw.status),
		slog.Int64("bytes_in", aw.in.Load()),
		slog.Int64("bytes_out", aw.out.Load()),
		slog.String("duration", time.Since(start).String()),
	)
	if why != "" {
		attrs = append(attrs, slog.String("reason", why))
	}
	if aw.err != nil {
		attrs = append(attrs, slog.String("err", aw.err.Error()))
	}
	h.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// checkRules applies rules (a route's, or a policy's [[rule]] tables) to
// the connection's peer, reading what they need that the listener did
// not.
func checkRules(rules []secnet.Rule, c *secnet.SecureConn) error {
	if len(rules) == 0 {
		return nil
	}
	_, err := secnet.Verify(c, rules...)
	var rej *secnet.RejectError
	if errors.As(err, &rej) {
		reasons := make([]string, len(rej.Failures))
		for i, f := range rej.Failures {
			reasons[i] = f.Error()
		}
		return fmt.Errorf("peer %s: %s", rej.Peer.String(), strings.Join(reasons, "; "))
	}
	return err
}

// writeRefusal answers with status and a JSON body {"message": msg}, the
// shape of the Docker API's errors, which the docker CLI prints.
func writeRefusal(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Message string `json:"message"`
	}{msg})
}

// upstreamError answers a request the upstream could not serve.
func (h *httpProxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(reqStateKey{}).(*reqState)
	if st != nil {
		st.w.err = err
	}
	if errors.Is(err, errStreamDone) || r.Context().Err() != nil {
		return // taken over and done, or the client went away
	}
	writeRefusal(w, http.StatusBadGateway, "secnet: the upstream failed: "+err.Error())
}

// errStreamDone ends a request whose connection modifyResponse took over.
var errStreamDone = errors.New("stream ended")

// modifyResponse takes the connection over for Docker's attach and exec
// without an Upgrade header: the daemon answers 200 with a raw or
// multiplexed stream content type and then uses the connection in both
// directions. (With Upgrade, the daemon answers 101 and ReverseProxy
// does the same.)
//
// Only a response whose body runs to the end of the connection (no
// Content-Length, not chunked) is taken over: the upstream's server has
// given the connection up to the stream then. The daemon sends the same
// content types on ordinary responses too (docker logs: chunked, on a
// kept-alive connection); taking such a connection over would pass what
// the client sends next to a connection the upstream still reads
// requests from, unchecked by any route.
func (h *httpProxy) modifyResponse(res *http.Response) error {
	st, _ := res.Request.Context().Value(reqStateKey{}).(*reqState)
	if st == nil || st.upgrade || st.upstream == nil || res.StatusCode != http.StatusOK || res.ContentLength != -1 ||
		len(res.TransferEncoding) > 0 || !res.Close {
		return nil
	}
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if ct != "application/vnd.docker.raw-stream" && ct != "application/vnd.docker.multiplexed-stream" {
		return nil
	}
	up, ok := st.upstream.(halfCloser)
	if !ok {
		return nil
	}
	conn, brw, err := http.NewResponseController(st.w).Hijack()
	if err != nil {
		return err
	}
	defer conn.Close()
	st.w.status = res.StatusCode
	head := *res
	head.Body = nil // write only the status line and header
	if err := head.Write(brw); err != nil {
		return err
	}
	if err := brw.Flush(); err != nil {
		return err
	}
	client, ok := conn.(halfCloser)
	if !ok {
		return fmt.Errorf("%w: %T cannot half-close", errStreamDone, conn)
	}
	errs := make(chan error, 2)
	go func() { errs <- copyThenCloseWrite(up, client) }()
	go func() { errs <- copyThenCloseWrite(client, res.Body) }()
	for range 2 {
		if err := <-errs; err != nil {
			conn.Close()
			up.Close()
			<-errs
			return fmt.Errorf("%w: %v", errStreamDone, err)
		}
	}
	return errStreamDone
}

// halfCloser is a connection whose sending side can be shut down alone.
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// copyThenCloseWrite copies src to dst and then shuts down dst's sending
// side, passing the end of stream on.
func copyThenCloseWrite(dst halfCloser, src io.Reader) error {
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	return dst.CloseWrite()
}

func upgradeType(h http.Header) string {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// reqState is what the parts of ReverseProxy that see a request need to
// know about it.
type reqState struct {
	w        *auditWriter
	link     *upstreamLink // of the client's connection
	upstream net.Conn      // the connection the request went over
	upgrade  bool          // the client asked for a protocol switch
}

type reqStateKey struct{}

// auditWriter records what a response was, for the audit log.
type auditWriter struct {
	http.ResponseWriter
	status  int
	in, out atomic.Int64 // bytes of the request's body (or of the stream) and of the response's
	err     error        // why the upstream failed
}

func (w *auditWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.out.Add(int64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach Flush.
func (w *auditWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack takes the client's connection over, for a protocol switch. The
// connection returned counts the bytes for the audit, reads first what
// the server had read ahead, and can be half-closed.
func (w *auditWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	hc := &hijackedConn{Conn: c, w: w}
	if brw.Reader.Buffered() > 0 {
		hc.ahead = brw.Reader
	}
	return hc, brw, nil
}

// hijackedConn is a client connection taken over from the HTTP server.
type hijackedConn struct {
	net.Conn
	w        *auditWriter
	ahead    *bufio.Reader // bytes the server read ahead, until drained
	watching bool          // watchHangup has started
}

func (c *hijackedConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.ahead != nil {
		n, err = c.ahead.Read(p[:min(len(p), c.ahead.Buffered())])
		if c.ahead.Buffered() == 0 {
			c.ahead = nil
		}
	} else {
		n, err = c.Conn.Read(p)
		if err == io.EOF {
			c.watchHangup()
		}
	}
	c.w.in.Add(int64(n))
	return n, err
}

// watchHangup closes the connection once the client, having sent its end
// of stream, closes its end altogether (see waitHangup): a client that is
// gone releases its connection, and the proxy's slot, even while the
// upstream stays silent, as on a byte-level connection (see pipe). A
// client that only half-closed still gets what the upstream sends.
// Reads happen on one goroutine at a time, as the copy that got the end
// of stream reads no more.
func (c *hijackedConn) watchHangup() {
	hc, ok := c.Conn.(*httpConn)
	if c.watching || !ok {
		return
	}
	c.watching = true
	go func() {
		if waitHangup(hc.UnixConn) {
			c.Conn.Close()
		}
	}() // ends when the connection is closed, by this or by its user
}

func (c *hijackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.out.Add(int64(n))
	return n, err
}

// CloseWrite shuts down the sending side towards the client.
func (c *hijackedConn) CloseWrite() error {
	if hc, ok := c.Conn.(halfCloser); ok {
		return hc.CloseWrite()
	}
	return fmt.Errorf("%T cannot half-close", c.Conn)
}

// countingBody counts the bytes of a request body.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// httpConn is a verified connection served by the HTTP server. Close
// signals serveConn.
type httpConn struct {
	*secnet.SecureConn
	passed    atomic.Pointer[httpPolicy] // the version whose rules the peer passed last
	up        upstreamLink
	closeOnce sync.Once
	done      chan struct{}
	peerOnce  sync.Once
	peer      slog.Attr
}

func (c *httpConn) Close() error {
	err := c.SecureConn.Close()
	c.closeOnce.Do(func() {
		c.up.drop(true)
		close(c.done)
	})
	return err
}

// peerAttr is the peer's identity for the log, read once per connection.
func (c *httpConn) peerAttr() slog.Attr {
	c.peerOnce.Do(func() {
		p := c.Peer()
		c.peer = peerAttr(&p)
	})
	return c.peer
}

type httpConnKey struct{}

// withHTTPConn is the server's ConnContext: it makes the verified
// connection, with the peer's identity, known to every request on it.
func withHTTPConn(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*httpConn); ok {
		return context.WithValue(ctx, httpConnKey{}, hc)
	}
	return ctx
}

// connQueue is a net.Listener whose connections are handed over by
// put: the proxy accepts and verifies, the HTTP server serves.
type connQueue struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// put hands c to the server; it reports false once the queue is closed.
func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.conns <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closeOnce.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.UnixAddr{Net: "unix", Name: "secnet-http"} }

// routeNames lists the routes of rt for the log, or nil.
func routeNames(rt *policy.Router) []string {
	if rt == nil {
		return nil
	}
	var names []string
	for _, r := range rt.Routes() {
		names = append(names, r.Name)
	}
	return names
}

// copyBuffers lends ReverseProxy its 32 KiB copy buffers, which it would
// otherwise allocate for every response.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (copyBuffers) Get() []byte  { return copyBufferPool.Get().(*[32 << 10]byte)[:] }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put((*[32 << 10]byte)(b)) }
