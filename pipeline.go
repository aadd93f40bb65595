package secnet

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Defaults of the pipeline's knobs (see ListenConfig).
const (
	// DefaultQueueSize is the default of ListenConfig.QueueSize.
	DefaultQueueSize = 128
	// DefaultVerifyTimeout is the default of ListenConfig.VerifyTimeout.
	DefaultVerifyTimeout = 10 * time.Second
)

// defaultWorkers is the default of ListenConfig.Workers: four per
// processor, and at least 16, because a verification mostly waits on the
// kernel rather than computes.
func defaultWorkers() int { return max(16, 4*runtime.GOMAXPROCS(0)) }

// inlineAttrs are the attributes whose reading no peer can delay: what
// the kernel captured at connect and gives back for the socket
// (getsockopt), and from /proc through the peer's pidfd its executable
// and its namespaces. readlink of /proc/<pid>/exe builds the path from
// the kernel's dentries without asking the file system, the statx of it
// answers from the inode cache (AT_STATX_DONT_SYNC: a FUSE or NFS server,
// which the peer may run, is not asked; TestProgramOnStalledFUSE), and
// /proc/<pid>/ns/* are links to nsfs. The cgroup file and a digest (which
// opens and reads the executable) are left to the workers.
const inlineAttrs = sockAttrs | attrProgram | attrNamespaces

// cannotWait reports whether verifying a peer under v can never wait on
// something a peer controls: the rules read only inlineAttrs, and none
// talks to the peer. (User and Group may ask NSS for a name that is not
// cached; that wait is the system's, not the peer's, and every peer would
// wait for it alike. RuleFunc reads the cgroup, so it runs in a worker.)
func (v *verifier) cannotWait() bool {
	return v.need&^inlineAttrs == 0 && len(v.hs) == 0
}

// inlineProcs is the most processors on which rules that cannot wait
// on a peer are verified inline (GOMAXPROCS when the listener is made).
// On one or two processors a handoff to a worker costs CPU (0.5–2.5 µs a
// connection in 2-core runs) and gains no rate, since there is no idle
// processor to verify on. On more, the goroutine that
// takes connections from the kernel is what bounds a listener's rate, as
// it bounds a plain listener's: whatever Accept adds to it per
// connection lowers the rate by that share. Through the workers it makes
// the accept, one SO_PEERCRED (for the uid's slots) and a handoff, about
// what a plain server's accept loop spends on starting the goroutine for
// each connection (2-core profiles: 5.1 µs a connection in it for UID
// through the workers, 4.9 for Program, 5.2 for plain's loop, 5.9 for UID
// inline), and the verification runs in parallel. (Not measured on more
// than two processors: none was available.)
const inlineProcs = 2

// inline reports whether a listener with v verifies in Accept: its rules
// cannot wait on a peer, and the machine has too few processors for
// parallel verification to pay (inlineProcs).
func (v *verifier) inline() bool {
	return v.cannotWait() && runtime.GOMAXPROCS(0) <= inlineProcs
}

// pipelineConfig is the pipeline's knobs with the defaults applied.
type pipelineConfig struct {
	workers   int           // verifications at once
	perUID    int           // verifications at once for one uid
	waiting   int           // connections of one uid waiting for a slot
	queue     int           // verified connections waiting for Accept
	timeout   time.Duration // per verification; 0: none
	checkUIDs bool          // perUID < workers: read each peer's uid on accept
}

func (lc *ListenConfig) pipelineConfig() pipelineConfig {
	pc := pipelineConfig{workers: lc.Workers, perUID: lc.WorkersPerUID, queue: lc.QueueSize, timeout: lc.VerifyTimeout}
	if pc.workers <= 0 {
		pc.workers = defaultWorkers()
	}
	if pc.perUID <= 0 {
		pc.perUID = max(1, pc.workers/4)
	}
	pc.perUID = min(pc.perUID, pc.workers)
	if pc.queue <= 0 {
		pc.queue = DefaultQueueSize
	}
	pc.waiting = pc.queue
	switch {
	case pc.timeout == 0:
		pc.timeout = DefaultVerifyTimeout
	case pc.timeout < 0:
		pc.timeout = 0
	}
	pc.checkUIDs = pc.perUID < pc.workers
	return pc
}

// pipeline verifies the connections of a Listener off the Accept path.
//
// One goroutine (acceptLoop) takes connections from the inner listener
// and hands each to one of cfg.workers worker goroutines (an errgroup)
// through an unbuffered channel; when every worker is busy it waits, and
// connections stay in the kernel's backlog. Before it hands one on, it
// reads the peer's uid (SO_PEERCRED, which no peer can slow down): a uid
// that already holds cfg.perUID verifications gets its connection put on
// its own waiting list, which the worker of that uid that finishes first
// takes over; beyond cfg.waiting on that list, acceptLoop waits while the
// uid's verifications keep ending (a burst) and rejects the connection
// once they are stalled (see admit). A verified connection goes into ready, a channel of
// cfg.queue connections, from which Accept takes them in the order they
// completed; when it is full the workers wait, and acceptLoop stops
// taking connections from the kernel.
//
// Errors of the inner listener go to Accept one at a time through errc
// (unbuffered); after each, acceptLoop waits on retry, which Accept
// answers when it is called again, so that it calls the inner Accept once
// for each Accept call, as a server's back-off expects.
type pipeline struct {
	l   *Listener
	cfg pipelineConfig

	ready chan *SecureConn // verified connections
	errc  chan error       // errors of the inner listener
	retry chan struct{}    // Accept was called again after an error
	done  chan struct{}    // closed by Close

	jobs       chan job     // connections for the workers, unbuffered
	ctxs       []*verifyCtx // one for each worker
	workers    errgroup.Group
	acceptDone chan struct{} // closed when acceptLoop returns

	mu         sync.Mutex
	uids       map[uint32]uidSlots
	room       sync.Cond   // on mu: a waiting list got shorter, or Accept took from a full queue
	admitWaits atomic.Bool // admit waits on room
}

// uidSlots is what one uid holds in the pipeline.
type uidSlots struct {
	busy    int       // verifications running
	waiting []job     // accepted, waiting for one of its slots
	moved   time.Time // when a verification of the uid last started from none running, or ended
}

// burstPatience is how long a uid's verifications may go without one
// ending before a connection beyond its waiting list is rejected. Within
// it the uid is taken to send a burst of connections that are verified
// as fast as they come (a busy client, a benchmark), and admit waits for
// its list to shorten, as a plain listener leaves connections in the
// kernel's backlog; past it the uid's verifications are stalled, and
// its further connections must not hold up the other uids'.
const burstPatience = 50 * time.Millisecond

// noUID is the uid key of connections whose uid could not be read; they
// share their slots (and are rejected by the verification anyway).
const noUID = ^uint32(0)

func newPipeline(l *Listener, cfg pipelineConfig) *pipeline {
	p := &pipeline{
		l:          l,
		cfg:        cfg,
		ready:      make(chan *SecureConn, cfg.queue),
		errc:       make(chan error),
		retry:      make(chan struct{}),
		done:       make(chan struct{}),
		acceptDone: make(chan struct{}),
		uids:       map[uint32]uidSlots{},
	}
	p.room.L = &p.mu
	p.jobs = make(chan job)
	p.ctxs = make([]*verifyCtx, cfg.workers)
	for i := range p.ctxs {
		p.ctxs[i] = &verifyCtx{timeout: cfg.timeout}
	}
	p.workers.SetLimit(cfg.workers)
	return p
}

// job is a connection for a worker, with the uid whose slot it holds
// and the credentials acceptLoop read to find that uid.
type job struct {
	c    net.Conn
	uid  uint32
	cred connCred
}

// connCred is the peer's SO_PEERCRED as acceptLoop read it, handed to
// the verification so that it does not ask the kernel again.
type connCred struct {
	pid, uid, gid int
	ok            bool // read; when false the verification reads them
}

// peer returns the identity the credentials make (when cr.ok).
func (cr connCred) peer() Peer {
	return Peer{PID: cr.pid, UID: cr.uid, GID: cr.gid, ovf: ownOverflowIDs(), known: attrCred}
}

// start starts acceptLoop and the workers. The workers live as long as
// the pipeline: a goroutine started for each connection would cost its
// start and the growth of its stack every time.
func (p *pipeline) start() {
	for _, x := range p.ctxs {
		p.workers.Go(func() error {
			for {
				select {
				case j := <-p.jobs:
					p.work(x, j)
				case <-p.done:
					return nil
				}
			}
		})
	}
	go p.acceptLoop()
}

// stop ends the pipeline: every verification is cancelled (its connection
// closed), acceptLoop and the workers return, and what was queued is
// closed. The inner listener must be closed (so that acceptLoop's Accept
// returns) between stop's first part and wait.
func (p *pipeline) stop() {
	close(p.done)
	for _, x := range p.ctxs {
		x.cancel()
	}
	p.mu.Lock()
	p.room.Broadcast()
	p.mu.Unlock()
}

// wait waits for the goroutines of a started pipeline and closes every
// connection left in it.
func (p *pipeline) wait() {
	<-p.acceptDone
	p.workers.Wait()
	p.drain()
}

// drain closes the connections that wait for Accept or for a slot. After
// stop, Close drains at once, so that their peers see the end while
// verifications still run, and again once the goroutines have ended.
func (p *pipeline) drain() {
	for {
		select {
		case sc := <-p.ready:
			sc.Close()
		default:
			p.mu.Lock()
			for uid, s := range p.uids {
				for _, j := range s.waiting {
					j.c.Close()
				}
				s.waiting = nil
				if s.busy == 0 {
					delete(p.uids, uid)
				} else {
					p.uids[uid] = s
				}
			}
			p.mu.Unlock()
			return
		}
	}
}

func (p *pipeline) closed() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *pipeline) acceptLoop() {
	defer close(p.acceptDone)
	for {
		c, err := p.l.inner.Accept()
		if err != nil {
			if p.closed() {
				return
			}
			select {
			case p.errc <- err:
			case <-p.done:
				return
			}
			select {
			case <-p.retry:
			case <-p.done:
				return
			}
			continue
		}
		j := job{c: c, uid: noUID}
		if p.cfg.checkUIDs {
			if j.cred = readConnCred(c); j.cred.ok {
				j.uid = uint32(j.cred.uid)
			}
		}
		if !p.admit(j) {
			continue
		}
		// This waits while every worker is busy: connections stay in
		// the kernel's backlog meanwhile.
		select {
		case p.jobs <- j:
		case <-p.done:
			c.Close()
			for w := p.next(j.uid); w.c != nil; w = p.next(j.uid) {
				w.c.Close()
			}
			return
		}
	}
}

// admit takes one of j.uid's slots for j.c and reports true, or puts j on
// the uid's waiting list (or rejects it when the list is full) and reports
// false.
//
// A full list means one of three things. The queue for Accept is full,
// and the slots are held by connections whose verification is done and
// that wait for Accept like everyone else: admit waits for room, and
// connections stay in the kernel's backlog, as they would without
// per-uid slots. The uid's verifications end as fast as they come (one
// ended within burstPatience): a burst, for which admit waits too. Or
// they are stalled: c is rejected, since its uid must not hold more of
// the listener.
func (p *pipeline) admit(j job) bool {
	if !p.cfg.checkUIDs {
		return true
	}
	c, uid := j.c, j.uid
	p.mu.Lock()
	for {
		s := p.uids[uid]
		if s.busy < p.cfg.perUID {
			if s.busy == 0 {
				s.moved = time.Now()
			}
			s.busy++
			p.uids[uid] = s
			p.mu.Unlock()
			return true
		}
		if len(s.waiting) < p.cfg.waiting {
			s.waiting = append(s.waiting, j)
			p.uids[uid] = s
			p.mu.Unlock()
			return false
		}
		// admitWaits is set before the queue is looked at: an Accept
		// that takes from the queue after this look sees it, and
		// broadcasts once Wait has released mu.
		p.admitWaits.Store(true)
		if p.closed() {
			break
		}
		// next broadcasts when the uid's list shortens; the timer wakes
		// admit when the uid would count as stalled.
		patience := burstPatience - time.Since(s.moved)
		if patience <= 0 && len(p.ready) < cap(p.ready) {
			break
		}
		var t *time.Timer
		if patience > 0 {
			t = time.AfterFunc(patience, p.wakeAdmitNow)
		}
		p.room.Wait()
		if t != nil {
			t.Stop()
		}
		p.admitWaits.Store(false)
	}
	p.admitWaits.Store(false)
	p.mu.Unlock()
	if p.closed() {
		c.Close() // closed by Close: not a rejection
		return false
	}
	peer := j.cred.peer()
	if !j.cred.ok {
		peer = connPeer(c)
	}
	c.Close()
	p.report(&RejectError{Peer: peer, Failures: []RuleError{{Rule: "pipeline", Err: fmt.Errorf(
		"%w: uid %d holds %d verifications and %d connections waiting for one",
		ErrTooManyPending, uid, p.cfg.perUID, p.cfg.waiting)}}})
	return false
}

// wakeAdmit wakes admit if it waits for room.
func (p *pipeline) wakeAdmit() {
	if p.admitWaits.Load() {
		p.mu.Lock()
		p.room.Broadcast()
		p.mu.Unlock()
	}
}

// wakeAdmitNow wakes admit if it waits.
func (p *pipeline) wakeAdmitNow() {
	p.mu.Lock()
	p.room.Broadcast()
	p.mu.Unlock()
}

// next hands uid's slot to the next connection waiting for it and returns
// its job, or gives the slot back and returns a job without a connection.
func (p *pipeline) next(uid uint32) job {
	if !p.cfg.checkUIDs {
		return job{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.uids[uid]
	s.moved = time.Now() // a verification of uid ended
	if len(s.waiting) > 0 {
		j := s.waiting[0]
		s.waiting[0] = job{}
		s.waiting = s.waiting[1:]
		if len(s.waiting) == 0 {
			s.waiting = nil
		}
		p.uids[uid] = s
		p.room.Broadcast()
		return j
	}
	if s.busy--; s.busy == 0 {
		delete(p.uids, uid)
	} else {
		p.uids[uid] = s
	}
	return job{}
}

// work verifies j's connection, then every connection that waits for a
// slot of its uid. A slot of the uid is held while a verification runs,
// not while a verified connection waits for room in the queue.
func (p *pipeline) work(x *verifyCtx, j job) {
	for uid := j.uid; j.c != nil; {
		sc, rej := p.verify(x, j)
		j = p.next(uid)
		switch {
		case rej != nil:
			p.report(rej)
		case sc != nil && p.closed():
			sc.Close()
		case sc != nil:
			select {
			case p.ready <- sc:
			case <-p.done:
				sc.Close()
			}
		}
	}
}

// verify verifies c under the deadline. It returns the verified
// connection, or closes c and returns the reasons to report (none when
// the listener was closed).
func (p *pipeline) verify(x *verifyCtx, j job) (*SecureConn, *RejectError) {
	c := j.c
	// At the deadline (or on Close) x shuts the peer's socket down and
	// closes it at once, even if the verification is blocked in a system
	// call that cannot be interrupted: the peer is not left waiting. The
	// worker stays busy until the call returns.
	x.begin(c)
	if p.closed() {
		x.end()
		c.Close()
		return nil, nil
	}
	sc, rej := p.l.v.verifyCred(x, c, j.cred)
	if x.end() {
		if sc != nil {
			sc.Close()
		}
		if p.closed() {
			return nil, nil // closed by Close: not a rejection
		}
		var peer Peer
		var failed []RuleError
		if rej != nil {
			peer, failed = rej.Peer, rej.Failures
		} else if sc != nil {
			peer = sc.id.peer
		}
		return nil, &RejectError{Peer: peer, Failures: append([]RuleError{{Rule: "deadline", Err: fmt.Errorf(
			"%w of %v", ErrVerifyTimeout, p.cfg.timeout)}}, failed...)}
	}
	if rej != nil {
		c.Close()
	}
	return sc, rej
}

// report calls the Rejected function, if any.
func (p *pipeline) report(rej *RejectError) {
	if fn := p.l.rejected.Load(); fn != nil && *fn != nil {
		(*fn)(rej)
	}
}

// abortConn ends a connection whose verification ran out of time: shut
// down first, so that the peer sees the end even while a system call of
// the verification holds the descriptor (Close waits for that call before
// it releases the descriptor).
func abortConn(c net.Conn) {
	if cr, ok := c.(interface{ CloseRead() error }); ok {
		cr.CloseRead()
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.Close()
}

// connPeer returns the credentials of c's peer, as far as they can be
// read, for the report of a connection rejected before its verification.
func connPeer(c net.Conn) Peer {
	if uc, ok := c.(*net.UnixConn); ok {
		return (&identity{conn: uc}).load(attrCred)
	}
	return Peer{}
}
