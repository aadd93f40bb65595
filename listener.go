package secnet

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ListenConfig holds the options for creating a verified listener, in the
// manner of net.ListenConfig. The zero value is ready to use.
type ListenConfig struct {
	// Mode, when not zero, is the permission of the socket file. It is set
	// exactly (the process umask does not apply), and the socket is never
	// reachable at its path with wider permissions: it is bound with at
	// most Mode&0700 (only its owner can connect), given its Owner and
	// Group, and then Mode. When zero the file gets what net.Listen would
	// give it: 0777 less the umask. Connecting needs write permission on
	// the file. Linux only: elsewhere Mode, Owner and Group are an error.
	Mode os.FileMode

	// Owner and Group, when not empty, name the user and the group (a
	// name or a numeric id) that own the socket file. They are set before
	// the socket is open to anyone but its owner.
	Owner, Group string

	// Rejected, when not nil, is called with the reasons for each
	// connection that fails verification, after the connection is
	// closed. It is called from the goroutine that rejected the
	// connection: one of the verification workers, or the listener's
	// accept goroutine (ErrTooManyPending). Calls may be concurrent, so it
	// must be safe for concurrent use, and it should be quick (log and
	// return): a worker that is in Rejected verifies nothing else. For
	// ListenPacket it is called for each datagram that fails, on the
	// goroutine that was reading.
	Rejected func(*RejectError)

	// Control, when not nil, is called on the listening socket before
	// bind, as net.ListenConfig.Control is.
	Control func(network, address string, c syscall.RawConn) error

	// KeepPidfd makes each accepted *SecureConn keep the pidfd that its
	// verification opened for the peer, and a file of /proc/<pid> that
	// pins the peer's memory map (two more file descriptors per
	// connection, closed by Close), so that (*SecureConn).Recheck can
	// tell later whether the process that connected still runs, and has
	// not called execve.
	KeepPidfd bool

	// The verification pipeline. Unless its rules are verified inline in
	// Accept (rules that cannot wait on a peer, with one or two
	// processors: see the package doc), the listener takes connections from
	// the kernel in a goroutine of its own (started by the first Accept)
	// and verifies them concurrently, each under a deadline; Accept returns
	// them in the order their verification completed. A peer that is slow
	// to verify (its executable on a file system that does not answer, a
	// large program to hash, a RuleFunc that waits) holds one slot and
	// delays nobody else.

	// Workers is how many connections are verified at once. Zero means
	// four per processor (GOMAXPROCS), and at least 16. When every
	// worker is busy the listener stops taking connections from the
	// kernel, which queues them in the socket's backlog as it does for a
	// plain listener.
	Workers int

	// WorkersPerUID is how many of the workers the connections of one
	// peer uid may hold at once, so that one user cannot starve the
	// others. Zero means a quarter of Workers (at least 1). The further
	// connections of a uid that holds them all wait, in the order they
	// came, for one of its workers; up to QueueSize of them may wait.
	// Beyond that, while the uid's verifications keep ending (a burst),
	// the listener stops taking connections from the kernel until one of
	// them is taken on, as a plain listener leaves them in its backlog;
	// once they have gone 50 ms without one ending (they are stalled), a
	// connection beyond that is rejected with ErrTooManyPending, so that
	// it does not hold up other uids. When WorkersPerUID is Workers or more, uids are
	// not counted (and not read before verification).
	WorkersPerUID int

	// QueueSize is how many verified connections may wait for Accept.
	// Zero means DefaultQueueSize (128). When the queue is full the
	// workers wait, and then the listener stops taking connections from
	// the kernel: a listener nobody accepts from holds at most Workers +
	// QueueSize connections, and QueueSize more for each uid that holds
	// all its workers. When uids are counted (WorkersPerUID below
	// Workers), a worker whose verified connection waits for the queue
	// has taken on the next connection of its uid already: up to
	// 2×Workers + QueueSize then, and the waiting ones of each uid.
	QueueSize int

	// VerifyTimeout is the deadline of each connection's verification,
	// counted from the moment a worker starts on it. A peer whose
	// verification outlasts it is rejected with ErrVerifyTimeout and its
	// connection is closed at the deadline; a worker blocked in a system
	// call that cannot be interrupted keeps its slot until the call
	// returns, while the others go on. Handshake rules run under the
	// same deadline. Zero means DefaultVerifyTimeout (10s); a negative
	// value means no deadline.
	VerifyTimeout time.Duration

	// alwaysPipeline makes the listener use the pipeline even for rules
	// that are verified inline (tests of the pipeline set it), and
	// neverPipeline verifies every rule inline in Accept, as secnet did
	// before the pipeline (benchmarks compare the two).
	alwaysPipeline, neverPipeline bool
}

// Listen announces on the Unix socket address and returns a listener that
// accepts only peers that pass every rule. network is "unix" or
// "unixpacket". An address starting with "@" or "\x00" names a Linux
// abstract socket, which has no file and so no permissions: the rules are
// its only protection, and Mode, Owner and Group cannot be used with it.
// A path may have up to 107 bytes (sun_path holds 108 with the NUL).
//
// The socket is bound at address itself, so Addr, every connection's
// LocalAddr and the client's RemoteAddr name it. A socket file left at
// address by a server that is gone (nothing listens on it) is replaced;
// any other existing file is an error and is left in place, and a
// symlink there is never followed. Close removes the socket file if it
// is still the one Listen created.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string, rules ...Rule) (*Listener, error) {
	v := newVerifier(rules)
	if v.err != nil {
		return nil, listenError(network, address, v.err)
	}
	inner, file, err := listenUnix(ctx, lc, network, address)
	if err != nil {
		return nil, err
	}
	return lc.newListener(inner, v, file), nil
}

// newListener returns a listener over inner with verifier v and the
// options of lc.
func (lc *ListenConfig) newListener(inner net.Listener, v verifier, file *socketFile) *Listener {
	v.keep = lc.KeepPidfd
	if len(v.hs) > 0 {
		v.server = listenerServer(inner)
	}
	l := &Listener{inner: inner, v: v, file: file, inline: v.err == nil && (v.inline() && !lc.alwaysPipeline || lc.neverPipeline)}
	l.SetRejected(lc.Rejected)
	l.p = newPipeline(l, lc.pipelineConfig())
	return l
}

// Listen is (*ListenConfig).Listen with a zero ListenConfig and a
// background context: a drop-in replacement for net.Listen("unix", ...)
// that takes the rules every peer must pass.
func Listen(network, address string, rules ...Rule) (*Listener, error) {
	var lc ListenConfig
	return lc.Listen(context.Background(), network, address, rules...)
}

// NewListener returns a listener that accepts, from inner, only the
// connections whose peers pass every rule. inner can come from anywhere: a
// socket inherited from systemd, a test. Connections that are not Unix
// sockets are rejected. If the rules are invalid (see Rule.Err), Accept
// returns that error and accepts nothing. It is
// (*ListenConfig).NewListener with a zero ListenConfig.
func NewListener(inner net.Listener, rules ...Rule) *Listener {
	var lc ListenConfig
	return lc.NewListener(inner, rules...)
}

// NewListener is the package's NewListener with the options of lc:
// Rejected, KeepPidfd and the pipeline's knobs (Workers, WorkersPerUID,
// QueueSize, VerifyTimeout). Mode, Owner, Group and Control concern a
// socket that Listen creates, and are ignored.
func (lc *ListenConfig) NewListener(inner net.Listener, rules ...Rule) *Listener {
	return lc.newListener(inner, newVerifier(rules), nil)
}

// Listener is a net.Listener that hands out only verified connections.
// Accept returns each as a *SecureConn typed as net.Conn; AcceptSecure
// returns it with its type.
//
// Unless its rules are verified inline (see the package doc), the first
// call of Accept (or AcceptSecure) starts the listener's pipeline: a
// goroutine that takes connections from the inner listener, and a
// bounded pool of goroutines that verify them (see ListenConfig for its
// knobs). Close stops them all and waits for them.
type Listener struct {
	inner    net.Listener
	v        verifier
	rejected atomic.Pointer[func(*RejectError)]
	file     *socketFile // the socket file Listen created, or nil
	p        *pipeline
	inline   bool // verify in Accept: the rules read only what cannot wait

	started   atomic.Bool
	startMu   sync.Mutex // held to start the pipeline and to close
	closed    bool       // under startMu
	closeOnce sync.Once
	closeErr  error
}

// SetRejected sets the function called for each rejected connection (see
// ListenConfig.Rejected): it must be safe for concurrent use. SetRejected
// may be called at any time, concurrently with Accept; connections
// rejected afterwards are reported to fn.
func (l *Listener) SetRejected(fn func(*RejectError)) { l.rejected.Store(&fn) }

// Accept waits for a connection whose peer passes every rule and returns
// it as a *SecureConn. Connections are verified concurrently, off the
// goroutine that calls Accept, and returned in the order their
// verification completed. Connections that fail are closed, reported to
// the Rejected function, and never returned: Accept goes on waiting.
// Errors of the inner listener (EMFILE, ...) are returned unchanged, one
// for each call, so servers back off as they do with a plain listener:
// after an error the inner listener is called again only when Accept is.
// After Close, Accept returns an error that satisfies
// errors.Is(err, net.ErrClosed).
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptSecure()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptSecure is Accept with the connection's own type.
func (l *Listener) AcceptSecure() (*SecureConn, error) {
	if l.v.err != nil {
		return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: l.v.err}
	}
	if l.inline {
		return l.acceptInline()
	}
	if !l.started.Load() {
		l.start()
	}
	p := l.p
	select {
	case <-p.done:
		return nil, l.closedError()
	default:
	}
	for {
		select {
		case sc := <-p.ready:
			p.wakeAdmit()
			if p.closed() {
				// Close ran meanwhile: it closes what was not returned
				// before it, and so does Accept.
				sc.Close()
				return nil, l.closedError()
			}
			return sc, nil
		case err := <-p.errc:
			return nil, err
		case p.retry <- struct{}{}:
			// The accept goroutine waited for this call after an error:
			// it asks the inner listener again, and we wait on.
		case <-p.done:
			return nil, l.closedError()
		}
	}
}

// acceptInline is AcceptSecure for rules that read only what no peer can
// delay (see verifier.cannotWait): their verification is a few system
// calls, cheaper than handing the connection to a worker and back, so it
// runs on the goroutine that called Accept.
func (l *Listener) acceptInline() (*SecureConn, error) {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.p.closed() {
				err = l.closedError()
			}
			return nil, err
		}
		sc, rej := l.v.verify(context.Background(), c)
		if rej == nil {
			return sc, nil
		}
		c.Close()
		l.p.report(rej)
	}
}

// start starts the pipeline, unless it runs or the listener is closed.
func (l *Listener) start() {
	l.startMu.Lock()
	defer l.startMu.Unlock()
	if !l.closed && !l.started.Load() {
		l.p.start()
		l.started.Store(true)
	}
}

func (l *Listener) closedError() error {
	return &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
}

// Close stops listening and removes the socket file Listen created (if it
// is still the same file). A blocked Accept returns. Every connection
// that is still being verified, or verified and not yet returned by
// Accept, is closed, and Close waits for the listener's goroutines to
// end (a verification blocked in a system call that cannot be
// interrupted, such as a read from a FUSE file system whose daemon does
// not answer, ends when that call returns). Close is idempotent: calls
// after the first return nil. Connections already accepted stay open.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.startMu.Lock()
		l.closed = true
		started := l.started.Load()
		l.startMu.Unlock()
		l.p.stop()
		l.closeErr = l.inner.Close()
		l.p.drain()
		if started {
			l.p.wait()
		}
		if l.file != nil {
			l.file.remove()
		}
	})
	return l.closeErr
}

// Addr returns the listener's address: the path given to Listen.
func (l *Listener) Addr() net.Addr {
	if l.file != nil {
		return l.file.addr
	}
	return l.inner.Addr()
}

func listenError(network, address string, err error) error {
	return &net.OpError{Op: "listen", Net: network, Addr: &net.UnixAddr{Name: address, Net: network}, Err: err}
}
