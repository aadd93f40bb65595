package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/secnet/secnet"
)

const proxyUsage = `secnet proxy --listen PATH --upstream PATH --policy FILE [options]

Accepts connections on the Unix socket PATH, verifies each peer with the
rules of the policy file, and connects every verified peer to the upstream
socket, copying both ways (with half-close, so request/response protocols
and streams both work). Peers that fail the policy are disconnected. Every
decision is logged with the peer's identity and, for a rejection, the
failing rules.

A policy with [[route]] tables makes the proxy an HTTP/1.1 reverse proxy
that decides each request: the most specific route pattern that matches
the request (http.ServeMux patterns such as "GET /containers/{id}/json")
picks the route, whose rules the client must pass; a refused request gets
403 with a JSON body {"message": ...} that says why, and every request is
logged with the client, the route and the outcome. After
a reload, the next request of an open connection is decided by the new
policy: its [[rule]] tables (a client they shut out gets 403), then its
routes.

The upstream is verified too: its server must run as root or as the
proxy's own user (--upstream-user names others), so that nobody who takes
the upstream path while the real server is down receives what clients
send. A client whose upstream fails is disconnected.

Signals: SIGHUP reads the policy file again; connections accepted from
then on are checked against the new rules, open ones go on, and a file
that does not load leaves the rules in force (the log says why). SIGINT
or SIGTERM stop accepting, remove the socket file, let open connections
finish for the grace period and then close them; a second signal closes
them at once.

Socket activation: started by systemd (or systemd-socket-activate) with
LISTEN_FDS, the proxy serves the sockets it is passed instead of creating
one; --listen then picks one of them by path and may be left out, and
the socket's mode and owner are the .socket unit's (SocketMode=,
SocketUser=, SocketGroup=).`

func runProxy(e *env, args []string) int {
	f := newFlags("proxy", proxyUsage)
	listen := f.String("listen", "", "`path` of the socket to create and accept on (required unless socket-activated)")
	upstream := f.String("upstream", "", "`path` of the socket to forward verified connections to (required)")
	policyFile := f.String("policy", "", "policy `file` every peer must pass (required; the format: secnet check --help)")
	mode := f.String("mode", "", "permission `bits` of the socket file, in octal, e.g. 0660 (default: 0777 less the umask)")
	owner := f.String("owner", "", "`user` (name or id) that owns the socket file")
	group := f.String("group", "", "`group` (name or id) that owns the socket file")
	upstreamUsers := f.String("upstream-user", "", "`users` (names or ids, comma-separated) one of which the upstream's server must run as (default: root or the proxy's user)")
	maxConns := f.Int("max-conns", 1024, "maximum number of connections served at once; more wait in the listen backlog")
	grace := f.Duration("grace", 10*time.Second, "on SIGINT/SIGTERM, how long open connections may go on before they are closed")
	dialTimeout := f.Duration("dial-timeout", 5*time.Second, "timeout for connecting to the upstream socket")
	idleTimeout := f.Duration("idle-timeout", 0, "close a connection after this long without a byte moved either way (0: never)")
	logOpts := addLogFlags(f)
	if _, status, ok := f.parse(e, args, 0); !ok {
		return status
	}
	if status, ok := f.require(e, "upstream", "policy"); !ok {
		return status
	}
	fileMode, err := parseMode(*mode)
	if err != nil {
		return f.fail(e, "--mode: %v", err)
	}
	if *maxConns < 1 {
		return f.fail(e, "--max-conns must be at least 1")
	}
	for _, err := range []error{
		checkNonNegative("--grace", *grace),
		checkNonNegative("--dial-timeout", *dialTimeout),
		checkNonNegative("--idle-timeout", *idleTimeout),
		checkSocketPath("--listen", *listen),
		checkSocketPath("--upstream", *upstream),
		checkOwner("--owner", *owner, false),
		checkOwner("--group", *group, true),
	} {
		if err != nil {
			return f.fail(e, "%v", err)
		}
	}
	if *listen != "" && sameSocket(*listen, *upstream) {
		return f.fail(e, "--listen and --upstream name the same socket (%q): the proxy would connect to itself", *listen)
	}
	upRule, err := upstreamRules(*upstreamUsers)
	if err != nil {
		return f.fail(e, "%v", err)
	}
	log, err := logOpts.logger(e.stderr)
	if err != nil {
		return f.fail(e, "%v", err)
	}
	pv, err := loadPolicyVersion(*policyFile)
	if err != nil {
		return failf(e, "proxy", "%v", err)
	}

	// From here on a signal is handled, not fatal: a SIGHUP while the
	// proxy starts is a reload once it serves.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	activated, err := activatedListeners()
	if err != nil {
		return failf(e, "proxy", "%v", err)
	}
	var lns []*secnet.Listener
	var listening [][]any
	if len(activated) > 0 {
		if *mode != "" || *owner != "" || *group != "" {
			closeActivated(activated)
			return f.fail(e, "--mode, --owner and --group do not apply to a socket systemd passed: set SocketMode=, SocketUser= and SocketGroup= in the .socket unit")
		}
		for _, a := range activated {
			path := a.ln.Addr().String()
			if *listen != "" && !sameSocket(path, *listen) {
				a.ln.Close()
				continue
			}
			if sameSocket(path, *upstream) {
				closeActivated(activated)
				return f.fail(e, "the socket systemd passed (%q) is --upstream: the proxy would connect to itself", path)
			}
			lns = append(lns, secnet.NewListener(a.ln, secnet.Anyone()))
			listening = append(listening, append([]any{"listen", path, "activated", a.name}, socketFileAttrs(path)...))
		}
		if len(lns) == 0 {
			names := make([]string, len(activated))
			for i, a := range activated {
				names[i] = strconv.Quote(a.ln.Addr().String())
			}
			return f.fail(e, "--listen %q is none of the sockets systemd passed (%v)", *listen, names)
		}
	} else {
		if *listen == "" {
			return f.fail(e, "--listen is required (unless systemd passes the socket)")
		}
		lc := secnet.ListenConfig{Mode: fileMode, Owner: *owner, Group: *group}
		// Anyone: accepting only reads the peer's credentials; each
		// connection is checked against the policy in force on its own
		// goroutine (see handle), so that a slow check delays nobody
		// else and a reload needs no new listener.
		ln, err := lc.Listen(context.Background(), "unix", *listen, secnet.Anyone())
		if err != nil {
			return failf(e, "proxy", "%v", err)
		}
		// Again now that the socket file exists: an upstream path that is
		// a symbolic link to it (or into its directory) could not be
		// followed before.
		if sameSocket(*listen, *upstream) {
			ln.Close()
			return f.fail(e, "--listen and --upstream name the same socket (%q is %q): the proxy would connect to itself", *upstream, *listen)
		}
		lns = append(lns, ln)
		listening = append(listening, append([]any{"listen", *listen}, socketFileAttrs(*listen)...))
	}

	p := &proxy{
		upstream: *upstream,
		dialer:   secnet.Dialer{Rules: []secnet.Rule{upRule}, Timeout: *dialTimeout},
		log:      log,
		slots:    make(chan struct{}, *maxConns),
		idle:     *idleTimeout,
	}
	p.policy.cur.Store(pv)
	// With routes in the policy, connections are served as HTTP, each
	// request decided by the routes of the policy in force.
	p.http = newHTTPProxy(func() *httpPolicy { return p.policy.load().http }, func(ctx context.Context) (net.Conn, error) {
		up, err := p.dialer.DialSecure(ctx, "unix", p.upstream)
		if err != nil {
			return nil, err // a refused upstream's server: the request's log line says why
		}
		return up, nil
	}, log, *idleTimeout)

	warnUpstream(log, *upstream)
	for _, attrs := range listening {
		log.Info("listening", append(attrs, append([]any{"upstream", *upstream, "upstream_rule", upRule.String(),
			"max_conns", *maxConns}, pv.attrs()...)...)...)
	}
	return p.serve(lns, sigs, *grace)
}

func closeActivated(as []activatedSocket) {
	for _, a := range as {
		a.ln.Close()
	}
}

// socketFileAttrs are the mode, owner and group of a socket file for the
// log.
func socketFileAttrs(path string) []any {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	gid, uid := fileOwner(fi)
	return []any{"mode", fmt.Sprintf("%04o", fi.Mode().Perm()), "owner", named(uid, userName(uid)), "group", named(gid, groupName(gid))}
}

// socketFileText is socketFileAttrs for a line of text.
func socketFileText(path string) string {
	a := socketFileAttrs(path)
	if a == nil {
		return ""
	}
	return fmt.Sprintf("(mode %s, owner %s, group %s)", a[1], a[3], a[5])
}

// proxy forwards verified connections to the upstream socket.
type proxy struct {
	upstream string
	dialer   secnet.Dialer
	http     *httpProxy // serves the connections of a policy with routes
	log      *slog.Logger
	policy   policyHolder
	idle     time.Duration
	conns    sync.WaitGroup
	active   atomic.Int64 // connections being served

	slotMu sync.Mutex
	slots  chan struct{} // one element per connection being served (or about to be accepted)
	full   bool          // all slots were taken, and the log said so

	// kill is cancelled when the connections still open must be closed.
	kill       context.Context
	killCancel context.CancelFunc
}

// serve accepts until SIGINT or SIGTERM, then drains; SIGHUP reloads the
// policy. It returns the exit status.
func (p *proxy) serve(lns []*secnet.Listener, sigs <-chan os.Signal, grace time.Duration) int {
	p.kill, p.killCancel = context.WithCancel(context.Background())
	stop := make(chan struct{})
	acceptErr := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { acceptErr <- p.acceptLoop(ln, stop) }()
	}

	status := exitOK
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				p.policy.reload(p.log)
				continue
			}
			p.log.Info("shutting down: no new connections", "signal", sig.String(), "open", p.open(), "grace", grace.String())
			break wait
		case err := <-acceptErr:
			p.log.Error("accept failed; shutting down", "err", err)
			status = exitError
			break wait
		}
	}
	close(stop)
	for _, ln := range lns {
		ln.Close() // unblocks Accept and removes the socket file Listen made
	}
	p.http.shutdown() // closes idle kept-alive HTTP connections

	drained := make(chan struct{})
	go func() { p.conns.Wait(); close(drained) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
drain:
	for {
		select {
		case <-drained:
			break drain
		case <-timer.C:
			p.log.Warn("grace period over: closing open connections", "open", p.open())
			break drain
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				continue // nothing new is accepted that a policy could apply to
			}
			p.log.Warn("second signal: closing open connections", "signal", sig.String(), "open", p.open())
			break drain
		}
	}
	p.killCancel()
	<-drained
	p.log.Info("stopped")
	return status
}

// open returns the number of connections being served.
func (p *proxy) open() int64 { return p.active.Load() }

// takeSlot waits for a free slot, and reports false when stop closes
// first. The log says when the limit is reached, once, and releaseSlot
// when it clears.
func (p *proxy) takeSlot(stop <-chan struct{}) bool {
	p.slotMu.Lock()
	select {
	case p.slots <- struct{}{}:
		p.slotMu.Unlock()
		return true
	default:
	}
	if !p.full {
		p.full = true
		p.log.Warn("connection limit reached: new connections wait in the listen backlog", "max_conns", cap(p.slots))
	}
	p.slotMu.Unlock()
	select {
	case p.slots <- struct{}{}:
		return true
	case <-stop:
		return false
	}
}

func (p *proxy) releaseSlot() {
	p.slotMu.Lock()
	<-p.slots
	if p.full {
		p.full = false
		p.log.Info("connection limit cleared: accepting again", "max_conns", cap(p.slots))
	}
	p.slotMu.Unlock()
}

// acceptLoop accepts connections while a slot is free, so that clients
// beyond the limit wait in the kernel's backlog. It returns nil when the
// listener is closed, or the error that made accepting impossible.
func (p *proxy) acceptLoop(ln *secnet.Listener, stop <-chan struct{}) error {
	var backoff time.Duration
	for {
		if !p.takeSlot(stop) {
			return nil
		}
		c, err := ln.AcceptSecure()
		if err != nil {
			p.releaseSlot()
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !retryable(err) {
				return err
			}
			// Out of file descriptors or memory: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Error("accept failed; retrying", "err", err, "retry_in", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		p.conns.Add(1)
		p.active.Add(1)
		go p.handle(c)
	}
}

// retryable reports accept errors that pass: resource exhaustion and
// connections aborted before they were accepted.
func retryable(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// handle serves one accepted connection: it checks the peer against the
// policy in force, then forwards it.
func (p *proxy) handle(c *secnet.SecureConn) {
	defer func() {
		c.Close()
		p.active.Add(-1)
		p.releaseSlot()
		p.conns.Done()
	}()
	pv := p.policy.load() // this connection's one version of the policy
	if _, err := secnet.Verify(c, pv.rules...); err != nil {
		var rej *secnet.RejectError
		if errors.As(err, &rej) {
			p.log.Warn("rejected", append(rejectAttrs(rej), "policy_sha256", pv.short())...)
		} else {
			p.log.Error("cannot verify the peer: closing the connection", "err", undouble(err.Error()), "policy_sha256", pv.short())
		}
		return
	}
	p.forward(c, pv)
}

// forward connects a verified connection to the upstream, whose server
// must pass the upstream rules, and copies both ways until both end.
func (p *proxy) forward(c *secnet.SecureConn, pv *policyVersion) {
	// The identity for the log; PeerBrief reads what the rules did not
	// need, so it is read only when a record is written, and only what
	// the record shows (not the cgroup and namespaces: a dozen /proc
	// reads for every connection).
	var peer slog.Attr
	logPeer := func() slog.Attr {
		if peer.Key == "" {
			id := c.PeerBrief()
			peer = peerAttr(&id)
		}
		return peer
	}
	if p.log.Enabled(context.Background(), slog.LevelInfo) {
		p.log.Info("allowed", logPeer(), "policy_sha256", pv.short())
	}
	if pv.router != nil {
		stop := context.AfterFunc(p.kill, func() { c.Close() })
		defer stop()
		p.http.serveConn(c, pv.http)
		return
	}
	start := time.Now()
	up, err := p.dialer.DialSecure(p.kill, "unix", p.upstream)
	if err != nil {
		var rej *secnet.RejectError
		if errors.As(err, &rej) {
			p.log.Error("upstream refused: its server fails the upstream rule; closing the connection",
				append([]any{logPeer(), "upstream", p.upstream}, serverAttrs(rej)...)...)
			return
		}
		p.log.Error("upstream unavailable: closing the connection", logPeer(), "upstream", p.upstream, "err", undouble(err.Error()))
		return
	}
	defer up.Close()
	// When the grace period is over, close both sides.
	stop := context.AfterFunc(p.kill, func() { c.Close(); up.Close() })
	defer stop()
	toUp, toPeer, err := pipe(c.UnixConn, up.UnixConn, pipeOptions{idle: p.idle})
	if errors.Is(err, errIdle) {
		p.log.Info("closed: idle", logPeer(), "idle_timeout", p.idle.String())
	}
	if !p.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	p.log.Debug("closed", logPeer(), "bytes_to_upstream", toUp, "bytes_to_peer", toPeer,
		"duration", time.Since(start).String(), "err", errString(err))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// parseMode parses an octal permission such as "0660"; "" is 0 (default).
func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m == 0 || m > 0o777 {
		return 0, errors.New("want octal permission bits such as 0660")
	}
	return os.FileMode(m), nil
}
