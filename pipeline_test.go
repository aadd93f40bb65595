package secnet

// The verification pipeline, with real peers: a peer whose verification
// stalls delays nobody else, one uid cannot take every worker, the
// deadline rejects and disconnects, Close ends everything, errors of the
// inner listener are neither lost nor retried ahead of Accept, and a
// listener nobody accepts from stops taking connections.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func init() {
	childRoles["holdmany"] = runHoldMany
}

// runHoldMany connects SECNET_TEST_N times to SECNET_TEST_SOCK, prints
// "connected" and holds the connections until its stdin closes.
func runHoldMany() int {
	n, _ := strconv.Atoi(os.Getenv("SECNET_TEST_N"))
	var conns []net.Conn
	for range n {
		c, err := net.Dial("unix", os.Getenv("SECNET_TEST_SOCK"))
		if err != nil {
			fmt.Println("dial:", err)
			return 2
		}
		conns = append(conns, c)
	}
	fmt.Println("connected")
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(conns) // open until now
	return 0
}

// staller is a rule that blocks the verification of the peers stall
// chooses until the test releases them: a peer whose verification takes
// as long as it likes.
type staller struct {
	stall   func(p *Peer) bool
	entered chan int // the pid of each stalled verification
	release chan struct{}
	once    sync.Once
}

// newStaller returns a staller. Close waits for stalled rules: tests
// release them (s.unblock, in a cleanup registered after the listener's,
// so that it runs first) before the listener is closed.
func newStaller(stall func(p *Peer) bool) *staller {
	return &staller{stall: stall, entered: make(chan int, 256), release: make(chan struct{})}
}

func (s *staller) rule() Rule {
	return RuleFunc("stall", func(p *Peer) error {
		if s.stall(p) {
			s.entered <- p.PID
			<-s.release
		}
		return nil
	})
}

func (s *staller) unblock() { s.once.Do(func() { close(s.release) }) }

// waitEntered waits until n verifications are stalled.
func (s *staller) waitEntered(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-s.entered:
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d verifications stalled within 20s", i, n)
		}
	}
}

// TestStalledPeerDoesNotDelayOthers stalls the verification of one peer
// for as long as the test runs: an allowed peer that connects after it is
// accepted all the same (a listener that verified in Accept would never
// deliver it).
func TestStalledPeerDoesNotDelayOthers(t *testing.T) {
	requireLinux(t)
	bin, other := peerBinary(t), otherBinary(t)
	st := newStaller(func(p *Peer) bool { return p.Program == other })
	h := listen(t, st.rule())
	t.Cleanup(st.unblock) // runs before the listener's cleanup
	startClient(t, other, h.path, "hold", nil)
	h.start()
	st.waitEntered(t, 1)
	begin := time.Now()
	cl := startClient(t, bin, h.path, "talk", nil)
	c := h.mustAccept(t)
	t.Logf("allowed peer accepted %v after it was started, while another peer's verification stalled", time.Since(begin))
	if p := c.Peer(); p.PID != cl.cmd.Process.Pid {
		t.Errorf("accepted pid %d, want the allowed peer %d", p.PID, cl.cmd.Process.Pid)
	}
	if got := cl.line(t); got != "pong" {
		t.Errorf("allowed peer read %q, want pong", got)
	}
}

// TestUIDCannotStarveOthers has one uid open many connections whose
// verification stalls: it holds WorkersPerUID workers, QueueSize more of
// its connections wait, the rest are rejected once its verifications
// have gone burstPatience without one ending, and a peer of another uid
// is accepted meanwhile.
func TestUIDCannotStarveOthers(t *testing.T) {
	requireLinux(t)
	requireRoot(t)
	bin := peerBinary(t)
	const hog, perUID, waiting, conns = 4242, 2, 3, 10
	st := newStaller(func(p *Peer) bool { return p.UID == hog })
	h := listenConfig(t, ListenConfig{Mode: 0666, Workers: 4, WorkersPerUID: perUID, QueueSize: waiting}, st.rule())
	t.Cleanup(st.unblock)
	h.start()
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: hog, Gid: hog}}
	hp := startPeer(t, bin, "holdmany", cred, "SECNET_TEST_SOCK="+h.path, "SECNET_TEST_N="+itoa(conns))
	if got := hp.line(t); got != "connected" {
		t.Fatalf("peer of uid %d: %q", hog, got)
	}
	st.waitEntered(t, perUID)
	for range conns - perUID - waiting {
		rej := h.mustReject(t)
		if !errors.Is(rej, ErrTooManyPending) || rej.Peer.UID != hog {
			t.Errorf("rejection %v, want ErrTooManyPending for uid %d", rej, hog)
		}
	}
	// Another uid, and our own, are verified while the hog's connections
	// hold their workers.
	for _, attr := range []*syscall.SysProcAttr{
		{Credential: &syscall.Credential{Uid: hog + 1, Gid: hog + 1}}, nil,
	} {
		cl := startClient(t, bin, h.path, "talk", attr)
		c := h.mustAccept(t)
		if p := c.Peer(); p.PID != cl.cmd.Process.Pid {
			t.Errorf("accepted pid %d (uid %d), want pid %d", p.PID, p.UID, cl.cmd.Process.Pid)
		}
		if got := cl.line(t); got != "pong" {
			t.Errorf("peer read %q, want pong", got)
		}
	}
	select {
	case pid := <-st.entered:
		t.Errorf("a third verification of uid %d (pid %d) started while it held %d", hog, pid, perUID)
	default:
	}
	// Released, the hog's waiting connections are verified in turn.
	st.unblock()
	for range perUID + waiting {
		if c := h.mustAccept(t); c.Peer().UID != hog {
			t.Errorf("accepted uid %d, want %d", c.Peer().UID, hog)
		}
	}
}

// TestVerifyDeadline stalls a verification past the deadline: the peer's
// connection is closed at the deadline, while the rule still runs, the
// peer is rejected with ErrVerifyTimeout once it returns, and another peer
// is accepted meanwhile.
func TestVerifyDeadline(t *testing.T) {
	requireLinux(t)
	bin, other := peerBinary(t), otherBinary(t)
	st := newStaller(func(p *Peer) bool { return p.Program == other })
	const timeout = 200 * time.Millisecond
	h := listenConfig(t, ListenConfig{Mode: 0666, VerifyTimeout: timeout}, st.rule())
	t.Cleanup(st.unblock)
	h.start()
	slow := startClient(t, other, h.path, "talk", nil)
	st.waitEntered(t, 1)
	if got := slow.line(t); got != "closed" {
		t.Fatalf("stalled peer read %q, want its connection closed at the deadline", got)
	}
	cl := startClient(t, bin, h.path, "talk", nil)
	h.mustAccept(t)
	if got := cl.line(t); got != "pong" {
		t.Errorf("allowed peer read %q, want pong", got)
	}
	st.unblock()
	rej := h.mustReject(t)
	if !errors.Is(rej, ErrVerifyTimeout) || rej.Peer.PID != slow.cmd.Process.Pid {
		t.Fatalf("rejection %v, want ErrVerifyTimeout for pid %d", rej, slow.cmd.Process.Pid)
	}
	if rej.Failures[0].Rule != "deadline" {
		t.Errorf("first failure %q, want deadline", rej.Failures[0].Rule)
	}
	t.Log(rej)
}

// TestCloseWhileVerifying closes a listener that holds verified
// connections nobody accepted and verifications that are still running:
// every peer sees its connection closed at once, Close waits for the
// running rules, and no goroutine or descriptor is left.
func TestCloseWhileVerifying(t *testing.T) {
	requireLinux(t)
	bin, other := peerBinary(t), otherBinary(t)
	run := func(t *testing.T, queued, stalled int) {
		st := newStaller(func(p *Peer) bool { return p.Program == other })
		path := filepath.Join(sockDir(t), "s")
		ln, err := Listen("unix", path, st.rule())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		defer st.unblock() // (before Close, if the test fails)
		first := make(chan error, 1)
		go func() { // starts the pipeline; takes the first allowed peer
			c, err := ln.Accept()
			if err == nil {
				c.Close()
			}
			first <- err
		}()
		startClient(t, bin, path, "talk", nil).line(t) // "closed"
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		var peers []*peerProc
		for range queued {
			peers = append(peers, startClient(t, bin, path, "talk", nil))
		}
		for range stalled {
			peers = append(peers, startClient(t, other, path, "talk", nil))
		}
		st.waitEntered(t, stalled)
		for deadline := time.Now().Add(20 * time.Second); len(ln.p.ready) < queued; {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d connections verified within 20s", len(ln.p.ready), queued)
			}
			time.Sleep(time.Millisecond)
		}
		closed := make(chan error, 1)
		go func() { closed <- ln.Close() }()
		for _, p := range peers {
			if got := p.line(t); got != "closed" {
				t.Errorf("peer %d read %q, want its connection closed by Close", p.cmd.Process.Pid, got)
			}
		}
		if stalled > 0 {
			select {
			case <-closed:
				t.Error("Close returned while a verification was still running")
			default:
			}
		}
		st.unblock()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Close did not return within 20s of the rules returning")
		}
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	}
	t.Run("warmup", func(t *testing.T) { run(t, 1, 1) })
	before := markLeaks(t)
	t.Run("close", func(t *testing.T) { run(t, 3, 3) })
	// Close waited for the listener's goroutines; the test's own (peer
	// readers) end with their processes.
	before.check(t, "by a listener closed while it verified")
}

// countingListener counts the calls of Accept of the listener it wraps,
// and fails them with err when err is set.
type countingListener struct {
	net.Listener
	calls atomic.Int64
	err   error
}

func (l *countingListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	if l.err != nil {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestInnerErrorsAreNotRetriedAhead has the inner listener fail every
// call with EMFILE: each Accept returns one such error, and the inner
// listener is called once for each Accept (a server's back-off decides
// when to try again), not in a loop.
func TestInnerErrorsAreNotRetriedAhead(t *testing.T) {
	inner, err := net.Listen("unix", filepath.Join(sockDir(t), "s"))
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: inner, err: &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}}
	lc := ListenConfig{alwaysPipeline: true}
	ln := lc.NewListener(cl, Anyone())
	defer ln.Close()
	const n = 5
	for range n {
		if _, err := ln.Accept(); !errors.Is(err, syscall.EMFILE) {
			t.Fatalf("Accept = %v, want EMFILE", err)
		}
	}
	time.Sleep(50 * time.Millisecond) // a loop would have called it thousands of times
	if got := cl.calls.Load(); got != n {
		t.Errorf("inner Accept called %d times for %d calls of Accept", got, n)
	}
}

// TestBoundedWhenNobodyAccepts connects many peers to a listener whose
// Accept was called once: it takes from the kernel only what its workers
// and its queue hold, and leaves the rest in the backlog. Accepting again
// drains it all.
func TestBoundedWhenNobodyAccepts(t *testing.T) {
	requireLinux(t)
	const workers, queue = 2, 3
	t.Run("uids-not-counted", func(t *testing.T) {
		// One returned, queue in the queue, workers waiting to queue
		// theirs, and one more that the accept goroutine holds until a
		// worker frees.
		boundedWhenNobodyAccepts(t, ListenConfig{Workers: workers, WorkersPerUID: workers, QueueSize: queue}, 1+queue+workers+1)
	})
	t.Run("per-uid", func(t *testing.T) {
		// At most: the uid's worker holds a verified connection waiting
		// for the queue and the next of the uid's connections (its slot
		// passed on), queue more wait for the slot, and the accept
		// goroutine holds one more until Accept makes room. (Those beyond
		// the waiting list while its verification ran were rejected with
		// ErrTooManyPending: not held.)
		const perUID = 1
		boundedWhenNobodyAccepts(t, ListenConfig{Workers: workers, WorkersPerUID: perUID, QueueSize: queue}, 1+queue+2*perUID+queue+1)
	})
}

// boundedWhenNobodyAccepts runs TestBoundedWhenNobodyAccepts with lc: the
// listener may hold bound connections taken from the kernel and not
// rejected.
func boundedWhenNobodyAccepts(t *testing.T, lc ListenConfig, bound int64) {
	path := filepath.Join(sockDir(t), "s")
	inner, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: inner}
	lc.alwaysPipeline = true
	perUID := lc.WorkersPerUID < lc.Workers
	var rejected atomic.Int64
	lc.Rejected = func(e *RejectError) {
		if !perUID || !errors.Is(e, ErrTooManyPending) {
			t.Errorf("rejected: %v", e)
		}
		rejected.Add(1)
	}
	ln := lc.NewListener(cl, UID(os.Getuid()))
	defer ln.Close()
	const n = 40
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	held := func() int64 { return cl.calls.Load() - rejected.Load() }
	if perUID {
		// How many a uid's connections hold depends on how fast they
		// were verified (while its verification runs, those beyond its
		// waiting list are rejected): wait until the count settles.
		last, since := held(), time.Now()
		for deadline := time.Now().Add(20 * time.Second); held() < bound && time.Since(since) < 200*time.Millisecond; {
			if time.Now().After(deadline) {
				t.Fatalf("the listener's connections did not settle within 20s: %d held", held())
			}
			if now := held(); now != last {
				last, since = now, time.Now()
			}
			time.Sleep(time.Millisecond)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); !perUID && held() < bound; {
		if time.Now().After(deadline) {
			t.Fatalf("the listener holds %d connections after 20s, want %d", held(), bound)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // time to take more, if it would
	if got := held(); got > bound+1 { // +1: the call in progress
		t.Errorf("a listener nobody accepts from took %d connections from the kernel, want at most %d", got-1, bound)
	}
	// Accepting again drains the queue in order of completion, and the
	// listener takes from the backlog again, until every connection is
	// accepted or rejected.
	accepted := make(chan struct{}, n)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	got := int64(1)
	for deadline := time.After(20 * time.Second); got+rejected.Load() < n; {
		select {
		case <-accepted:
			got++
		case <-time.After(time.Millisecond):
		case <-deadline:
			t.Fatalf("%d connections accepted and %d rejected within 20s of accepting again, of %d", got, rejected.Load(), n)
		}
	}
	t.Logf("%d accepted, %d rejected", got, rejected.Load())
}

// TestSetRejectedWhileAccepting replaces the Rejected function while
// workers report rejections (go test -race checks the handover).
func TestSetRejectedWhileAccepting(t *testing.T) {
	for _, pipeline := range []bool{false, true} {
		t.Run(map[bool]string{false: "inline", true: "pipeline"}[pipeline], func(t *testing.T) {
			setRejectedWhileAccepting(t, ListenConfig{alwaysPipeline: pipeline})
		})
	}
}

func setRejectedWhileAccepting(t *testing.T, lc ListenConfig) {
	path := filepath.Join(sockDir(t), "s")
	ln, err := lc.Listen(context.Background(), "unix", path, UID(os.Getuid()+4242))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var a, b atomic.Int64
	ln.SetRejected(func(*RejectError) { a.Add(1) })
	go ln.Accept()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			if i%2 == 0 {
				ln.SetRejected(func(*RejectError) { a.Add(1) })
			} else {
				ln.SetRejected(func(*RejectError) { b.Add(1) })
			}
			runtime.Gosched()
		}
	}()
	for range 200 {
		dialRejected(t, path)
	}
	for deadline := time.Now().Add(10 * time.Second); a.Load()+b.Load() < 200 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := a.Load() + b.Load(); n != 200 {
		t.Errorf("%d rejections reported, want 200", n)
	}
}

// TestInlineDecision checks which listeners verify in Accept: rules that
// cannot wait on a peer (those that read the socket, the executable or
// the namespaces) with one or two processors, rules that can wait on a
// peer never.
func TestInlineDecision(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to build a Program rule with")
	}
	slow := RuleFunc("slow", func(*Peer) error { return nil })
	for _, c := range []struct {
		name  string
		rules []Rule
		procs int
		want  bool
	}{
		{"uid/1", []Rule{UID(0)}, 1, true},
		{"uid/2", []Rule{UID(0), Label("*")}, 2, true},
		{"uid/16", []Rule{UID(0), Label("*")}, 16, false},
		{"program/2", []Rule{Program(sh)}, 2, true},
		{"program/16", []Rule{Program(sh)}, 16, false},
		{"anyof-uid-program/16", []Rule{AnyOf(UID(0), Program(sh))}, 16, false},
		{"ruleFunc/1", []Rule{slow}, 1, false},
		{"uid-ruleFunc/2", []Rule{UID(0), slow}, 2, false},
	} {
		runtime.GOMAXPROCS(c.procs)
		v := newVerifier(c.rules)
		if v.err != nil {
			t.Fatalf("%s: %v", c.name, v.err)
		}
		if got := v.inline(); got != c.want {
			t.Errorf("%s: inline = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestUIDBurstIsNotRejected has one uid open many more connections at
// once than its slots and its waiting list hold, with verifications that
// end quickly: a burst, not a stall. Every connection is accepted, as a
// plain listener would accept them from its backlog; none is rejected
// with ErrTooManyPending.
func TestUIDBurstIsNotRejected(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	const conns = 40
	quick := RuleFunc("quick", func(*Peer) error { time.Sleep(200 * time.Microsecond); return nil })
	h := listenConfig(t, ListenConfig{Mode: 0666, Workers: 4, WorkersPerUID: 1, QueueSize: 2}, quick)
	h.start()
	hp := startPeer(t, bin, "holdmany", nil, "SECNET_TEST_SOCK="+h.path, "SECNET_TEST_N="+itoa(conns))
	for i := range conns {
		c, rej := h.next(t)
		if rej != nil {
			t.Fatalf("connection %d of a burst of %d rejected: %v", i+1, conns, rej)
		}
		c.Close()
	}
	if got := hp.line(t); got != "connected" {
		t.Fatalf("burst peer: %q", got)
	}
}
