package main

import (
	"context"
	"errors"
	"io"
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
	"github.com/secnet/secnet/policy"
)

const proxyUsage = `secnet proxy --listen PATH --upstream PATH --policy FILE [options]

Accepts connections on the Unix socket PATH, verifies each peer with the
rules of the policy file, and connects every verified peer to the upstream
socket, copying both ways (with half-close, so request/response protocols
and streams both work). Peers that fail the policy are disconnected. Every
decision is logged with the peer's identity and, for a rejection, the
failing rules. On SIGINT or SIGTERM the proxy stops accepting, removes the
socket file, lets open connections finish for the grace period and then
closes them; a second signal closes them at once.`

func runProxy(e *env, args []string) int {
	f := newFlags("proxy", proxyUsage)
	listen := f.String("listen", "", "`path` of the socket to create and accept on (required)")
	upstream := f.String("upstream", "", "`path` of the socket to forward verified connections to (required)")
	policyFile := f.String("policy", "", "policy `file` every peer must pass (required; see docs/policy.md)")
	mode := f.String("mode", "", "permission bits of the socket file, in octal, e.g. 0660 (default: 0777 less the umask)")
	owner := f.String("owner", "", "`user` (name or id) that owns the socket file")
	group := f.String("group", "", "`group` (name or id) that owns the socket file")
	maxConns := f.Int("max-conns", 1024, "maximum number of connections served at once; more wait in the listen backlog")
	grace := f.Duration("grace", 10*time.Second, "on SIGINT/SIGTERM, how long open connections may go on before they are closed")
	dialTimeout := f.Duration("dial-timeout", 5*time.Second, "timeout for connecting to the upstream socket")
	logOpts := addLogFlags(f)
	if _, status, ok := f.parse(e, args, 0); !ok {
		return status
	}
	if status, ok := f.require(e, "listen", "upstream", "policy"); !ok {
		return status
	}
	fileMode, err := parseMode(*mode)
	if err != nil {
		return f.fail(e, "--mode: %v", err)
	}
	if *maxConns < 1 {
		return f.fail(e, "--max-conns must be at least 1")
	}
	log, err := logOpts.logger(e.stderr)
	if err != nil {
		return f.fail(e, "%v", err)
	}
	pol, err := policy.Load(*policyFile)
	if err != nil {
		return failf(e, "proxy", "%v", err)
	}

	p := &proxy{
		upstream: *upstream,
		dialer:   net.Dialer{Timeout: *dialTimeout},
		log:      log,
		slots:    make(chan struct{}, *maxConns),
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	lc := secnet.ListenConfig{
		Mode:  fileMode,
		Owner: *owner,
		Group: *group,
		Rejected: func(rej *secnet.RejectError) {
			log.Warn("rejected", rejectAttrs(rej)...)
		},
	}
	ln, err := lc.Listen(context.Background(), "unix", *listen, pol.Rules()...)
	if err != nil {
		return failf(e, "proxy", "%v", err)
	}
	rules := make([]string, 0, len(pol.Rules()))
	for _, r := range pol.Rules() {
		rules = append(rules, r.String())
	}
	log.Info("listening", "listen", *listen, "upstream", *upstream, "policy", *policyFile, "rules", rules)
	return p.serve(ln, sigs, *grace)
}

// proxy forwards verified connections to the upstream socket.
type proxy struct {
	upstream string
	dialer   net.Dialer
	log      *slog.Logger
	slots    chan struct{} // one element per connection being served (or about to be accepted)
	conns    sync.WaitGroup
	active   atomic.Int64 // connections being served
	// kill is cancelled when the connections still open must be closed.
	kill       context.Context
	killCancel context.CancelFunc
}

// serve accepts until a signal, then drains; it returns the exit status.
func (p *proxy) serve(ln *secnet.Listener, sigs <-chan os.Signal, grace time.Duration) int {
	p.kill, p.killCancel = context.WithCancel(context.Background())
	stop := make(chan struct{})
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- p.acceptLoop(ln, stop) }()

	status := exitOK
	select {
	case sig := <-sigs:
		p.log.Info("shutting down: no new connections", "signal", sig.String(), "open", p.open(), "grace", grace.String())
	case err := <-acceptErr:
		p.log.Error("accept failed; shutting down", "err", err)
		status = exitError
	}
	close(stop)
	ln.Close() // unblocks Accept and removes the socket file

	drained := make(chan struct{})
	go func() { p.conns.Wait(); close(drained) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		p.log.Warn("grace period over: closing open connections", "open", p.open())
	case sig := <-sigs:
		p.log.Warn("second signal: closing open connections", "signal", sig.String(), "open", p.open())
	}
	p.killCancel()
	<-drained
	p.log.Info("stopped")
	return status
}

// open returns the number of connections being served.
func (p *proxy) open() int64 { return p.active.Load() }

// acceptLoop accepts verified connections while a slot is free, so that
// clients beyond the limit wait in the kernel's backlog. It returns nil
// when the listener is closed, or the error that made accepting
// impossible.
func (p *proxy) acceptLoop(ln *secnet.Listener, stop <-chan struct{}) error {
	var backoff time.Duration
	for {
		select {
		case p.slots <- struct{}{}:
		case <-stop:
			return nil
		}
		c, err := ln.AcceptSecure()
		if err != nil {
			<-p.slots
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

// handle serves one verified connection.
func (p *proxy) handle(c *secnet.SecureConn) {
	defer func() {
		c.Close()
		p.active.Add(-1)
		<-p.slots
		p.conns.Done()
	}()
	// The identity for the log; Peer reads what the rules did not need,
	// so it is read only when a record is written.
	var peer slog.Attr
	logPeer := func() slog.Attr {
		if peer.Key == "" {
			id := c.Peer()
			peer = peerAttr(&id)
		}
		return peer
	}
	if p.log.Enabled(context.Background(), slog.LevelInfo) {
		p.log.Info("allowed", logPeer())
	}
	start := time.Now()
	up, err := p.dialer.DialContext(p.kill, "unix", p.upstream)
	if err != nil {
		p.log.Error("upstream unavailable: closing the connection", logPeer(), "upstream", p.upstream, "err", err)
		return
	}
	upc := up.(*net.UnixConn)
	defer upc.Close()
	// When the grace period is over, close both sides.
	stop := context.AfterFunc(p.kill, func() { c.Close(); upc.Close() })
	defer stop()
	toUp, toPeer, err := pipe(c.UnixConn, upc, true)
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

// bufSize is the size of the copy buffers where splice cannot be used:
// large, so that bulk transfers take few system calls.
const bufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// pipe copies a to b and b to a until both directions end, passing each
// end of stream on with CloseWrite (half-close), so that a peer that
// shuts down its sending side still gets the reply. An error in one
// direction closes both connections. It returns the bytes copied each way
// and the first error. With useSplice false it copies through buffers
// even where splice works (for tests).
func pipe(a, b *net.UnixConn, useSplice bool) (aToB, bToA int64, err error) {
	errs := make(chan error, 1)
	go func() {
		var err error
		aToB, err = copyHalf(b, a, useSplice)
		errs <- err
	}()
	bToA, err = copyHalf(a, b, useSplice)
	if err2 := <-errs; err == nil {
		err = err2
	}
	return aToB, bToA, err
}

// copyHalf copies src to dst, then shuts down dst's sending side; on an
// error it closes both.
func copyHalf(dst, src *net.UnixConn, useSplice bool) (n int64, err error) {
	handled := false
	if useSplice {
		n, handled, err = spliceStream(dst, src)
	}
	if !handled {
		buf := bufPool.Get().(*[]byte)
		// *net.UnixConn implements neither io.WriterTo nor io.ReaderFrom,
		// so CopyBuffer uses buf.
		n, err = io.CopyBuffer(dst, src, *buf)
		bufPool.Put(buf)
	}
	if err == nil {
		err = dst.CloseWrite()
	}
	if err != nil {
		dst.Close()
		src.Close()
	}
	return n, err
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
