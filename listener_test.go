package secnet

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestAcceptsMatchingPeer(t *testing.T) {
	bin := peerBinary(t)
	h := listen(t, UID(os.Getuid()), Program(bin))
	cl := startClient(t, bin, h.path, "hold", nil) // alive while Peer reads /proc
	c := h.mustAccept(t)
	p := c.Peer()
	if p.PID != cl.cmd.Process.Pid || p.UID != os.Getuid() || p.GID != os.Getgid() {
		t.Errorf("peer = %v, want pid %d uid %d gid %d", &p, cl.cmd.Process.Pid, os.Getuid(), os.Getgid())
	}
	if p.Program != bin {
		t.Errorf("Program = %q, want %q", p.Program, bin)
	}
	groups, _ := os.Getgroups()
	if !sameInts(p.Groups, groups) {
		t.Errorf("Groups = %v, want %v", p.Groups, groups)
	}
	if err := p.Err(); err != nil {
		t.Errorf("Err = %v", err)
	}
	if got := cl.line(t); got != "connected" {
		t.Errorf("client said %q, want connected", got)
	}
}

func TestRejectNamesEveryFailedRule(t *testing.T) {
	bin := peerBinary(t)
	other := os.Getuid() + 4242
	// The uid and label rules fail on what the socket gives: the program
	// rule, which would read /proc, is not evaluated, and the rejection
	// says so.
	h := listen(t, UID(other), GID(os.Getgid()), Program("/bin/sh"), Label("system_u:*"))
	cl := startClient(t, bin, h.path, "talk", nil)
	rej := h.mustReject(t)
	if got := cl.line(t); got != "closed" {
		t.Errorf("rejected client read %q, want the connection closed", got)
	}
	if got := failedRules(rej); got != "uid,label" {
		t.Errorf("failed rules = %s, want uid,label (%v)", got, rej)
	}
	if got := strings.Join(rej.NotEvaluated, ","); got != "program(/bin/sh)" {
		t.Errorf("NotEvaluated = %q, want program(/bin/sh)", got)
	}
	if rej.Peer.known&attrProgram != 0 {
		t.Errorf("the program was read (%q) though a uid rule had failed", rej.Peer.Program)
	}
	if !errors.Is(rej, ErrRejected) {
		t.Error("errors.Is(rej, ErrRejected) = false")
	}
	msg := rej.Error()
	for _, want := range []string{"uid " + itoa(os.Getuid()) + " is not " + itoa(other), "not evaluated: program(/bin/sh)", "pid=" + itoa(cl.cmd.Process.Pid)} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}

	// Rules of the same cost are all evaluated: with the uid passing, the
	// program and the label both fail and both are named.
	h = listen(t, UID(os.Getuid()), Program("/bin/sh"), Label("system_u:*"))
	startClient(t, bin, h.path, "talk", nil)
	rej = h.mustReject(t)
	if got := failedRules(rej); got != "label" || len(rej.NotEvaluated) != 1 {
		t.Errorf("failed rules = %s, not evaluated %q; want label, with program not evaluated (%v)", got, rej.NotEvaluated, rej)
	}
	h = listen(t, UID(os.Getuid()), Program("/bin/sh"), Cgroup("/nosuch/*"))
	startClient(t, bin, h.path, "talk", nil)
	rej = h.mustReject(t)
	if got := failedRules(rej); got != "program,cgroup" || len(rej.NotEvaluated) != 0 {
		t.Errorf("failed rules = %s, not evaluated %q; want program,cgroup (%v)", got, rej.NotEvaluated, rej)
	}
	if msg := rej.Error(); !strings.Contains(msg, "program "+strconv.Quote(bin)+" is not /bin/sh") {
		t.Errorf("error %q does not name the program", msg)
	}
}

// failedRules returns the names of the rules that rej names as failed.
func failedRules(rej *RejectError) string {
	var names []string
	for _, f := range rej.Failures {
		names = append(names, f.Rule)
	}
	return strings.Join(names, ",")
}

func TestOnlyNeededAttributesAreRead(t *testing.T) {
	bin := peerBinary(t)
	h := listen(t, UID(os.Getuid()))
	startClient(t, bin, h.path, "hold", nil)
	c := h.mustAccept(t)
	if k := c.id.peer.known; k != attrCred {
		t.Fatalf("a UID rule read %v, want credentials only", k)
	}
	// PeerBrief reads the program too, but not the cgroup and namespaces.
	if p := c.PeerBrief(); p.Program != bin || p.known != attrBrief || p.Cgroup != "" {
		t.Fatalf("PeerBrief() = %v (read %v), want program %s and no cgroup", &p, p.known, bin)
	}
	// Peer reads the rest on demand, still through the pidfd.
	if p := c.Peer(); p.Program != bin || p.known != attrAll {
		t.Fatalf("Peer() = %v (read %v), want program %s", &p, p.known, bin)
	}
}

func TestCloseUnblocksAccept(t *testing.T) {
	h := listen(t, Anyone())
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := h.ln.Accept()
			errc <- err
		}()
	}
	if err := h.ln.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not unblock Accept")
		}
	}
	if _, err := os.Lstat(h.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v, want it removed", err)
	}
	if err := h.ln.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestCloseKeepsAReplacedFile(t *testing.T) {
	h := listen(t, Anyone())
	os.Remove(h.path)
	if err := os.WriteFile(h.path, []byte("not ours"), 0600); err != nil {
		t.Fatal(err)
	}
	h.ln.Close()
	if b, err := os.ReadFile(h.path); err != nil || string(b) != "not ours" {
		t.Fatalf("Close removed or changed a file it did not create: %q, %v", b, err)
	}
}

func TestSocketFileMode(t *testing.T) {
	old := syscall.Umask(0077) // the mode must not depend on the umask
	defer syscall.Umask(old)
	path := filepath.Join(sockDir(t), "s")
	lc := ListenConfig{Mode: 0660}
	if os.Geteuid() == 0 {
		lc.Owner, lc.Group = "daemon", "adm"
	}
	ln, err := lc.Listen(context.Background(), "unix", path, Anyone())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0660 {
		t.Errorf("socket file mode = %v, want socket 0660", fi.Mode())
	}
	st := fi.Sys().(*syscall.Stat_t)
	if os.Geteuid() == 0 && (st.Uid != 1 || st.Gid != 4) {
		t.Errorf("socket file owner = %d:%d, want daemon:adm (1:4)", st.Uid, st.Gid)
	}
	if got := ln.Addr().String(); got != path {
		t.Errorf("Addr = %q, want %q", got, path)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the socket (no leftover temporary directory)", len(entries))
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(sockDir(t), "s")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // a crashed server leaves its socket file behind
	ln, err := Listen("unix", path, Anyone())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
}

func TestLiveSocketIsNotReplaced(t *testing.T) {
	path := filepath.Join(sockDir(t), "s")
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := Listen("unix", path, Anyone()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Listen over a live socket: %v, want EADDRINUSE", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the live server's socket was disturbed: %v", err)
	}
	c.Close()
}

func TestOtherFileIsNotReplaced(t *testing.T) {
	path := filepath.Join(sockDir(t), "s")
	if err := os.WriteFile(path, []byte("data"), 0600); err != nil {
		t.Fatal(err)
	}
	_, err := Listen("unix", path, Anyone())
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v, want an error saying it is not a socket", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Fatal("the regular file was changed")
	}
}

func TestAbstractSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("abstract sockets are Linux only")
	}
	addr := "@secnet-test-" + itoa(os.Getpid())
	ln, err := Listen("unix", addr, UID(os.Getuid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("unix", addr); err == nil {
			c.Close()
		}
	}()
	c, err := ln.AcceptSecure()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	lc := ListenConfig{Mode: 0600}
	if _, err := lc.Listen(context.Background(), "unix", addr+"-2", Anyone()); err == nil {
		t.Fatal("Mode on an abstract socket: no error")
	}
}

func TestUnixpacket(t *testing.T) {
	path := filepath.Join(sockDir(t), "s")
	ln, err := Listen("unixpacket", path, UID(os.Getuid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("unixpacket", path); err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := ln.AcceptSecure()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.Peer(); p.PID != os.Getpid() {
		t.Errorf("pid = %d, want %d", p.PID, os.Getpid())
	}
}

func TestRulesAreRequired(t *testing.T) {
	path := filepath.Join(sockDir(t), "s")
	if _, err := Listen("unix", path); err == nil || !strings.Contains(err.Error(), "Anyone") {
		t.Fatalf("Listen without rules: %v, want an error pointing to Anyone", err)
	}
	if _, err := Listen("unix", path, Program("relative/path")); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Fatalf("Listen with a relative Program path: %v", err)
	}
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Program("/usr/bin"), `rule program: "/usr/bin" is a directory, not an executable file`},
		{Program("/bin/sh", "/etc/passwd"), `rule program: "/etc/passwd" is not executable (mode 0644 has no execute permission)`},
		{User("root", "no-such-user-sn"), `rule user: no user named "no-such-user-sn" exists`},
		{Group("no-such-group-sn"), `rule group: no group named "no-such-group-sn" exists`},
		{Not(AnyOf(UID(0), User("no-such-user-sn"))), `no user named "no-such-user-sn" exists`},
	} {
		if err := tc.rule.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: Err = %v, want %q", tc.rule, err, tc.want)
		}
		if _, err := Listen("unix", path, tc.rule); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen with %v: %v, want %q", tc.rule, err, tc.want)
		}
	}
	if _, err := Listen("unix", path, Rule{}); err == nil {
		t.Fatal("Listen with a zero Rule: no error")
	}
	inner, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(inner, UID())
	defer ln.Close()
	if _, err := ln.Accept(); err == nil || !strings.Contains(err.Error(), "no user ids") {
		t.Fatalf("Accept with an invalid rule: %v", err)
	}
}

func TestNewListenerRejectsOtherSockets(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no TCP loopback:", err)
	}
	ln := NewListener(inner, Anyone())
	rejected := make(chan *RejectError, 1)
	ln.SetRejected(func(e *RejectError) { rejected <- e })
	defer ln.Close()
	go ln.Accept()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case e := <-rejected:
		if e.Failures[0].Rule != "unix" {
			t.Errorf("rejection = %v, want the unix rule", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a TCP connection was not rejected")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on the rejected connection: %v, want EOF", err)
	}
}

// errListener is an inner listener whose Accept fails with EMFILE, as a
// process out of file descriptors does.
type errListener struct{ net.Listener }

func (errListener) Accept() (net.Conn, error) {
	return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func TestInnerErrorsPassThrough(t *testing.T) {
	inner, err := net.Listen("unix", filepath.Join(sockDir(t), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	ln := NewListener(errListener{inner}, Anyone())
	defer ln.Close()
	_, err = ln.Accept()
	if !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("Accept = %v, want the inner EMFILE unchanged", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "accept" {
		t.Fatalf("Accept = %#v, want the inner *net.OpError", err)
	}
}

func TestManyClientsAtOnce(t *testing.T) {
	h := listen(t, UID(os.Getuid()))
	h.start()
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("unix", h.path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			c.Write([]byte("ping"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
				errs <- errors.New("no pong: " + errString(err))
			}
		}()
	}
	for range n {
		h.mustAccept(t)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNoLeakAfterRejections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts fds in /proc/self/fd")
	}
	// These rules are verified in Accept; the pipeline's workers are
	// tested too.
	for _, pipeline := range []bool{false, true} {
		t.Run(map[bool]string{false: "inline", true: "pipeline"}[pipeline], func(t *testing.T) {
			noLeakAfterRejections(t, pipeline)
		})
	}
}

func noLeakAfterRejections(t *testing.T, pipeline bool) {
	var rejections int
	var mu sync.Mutex
	path := filepath.Join(sockDir(t), "s")
	lc := ListenConfig{alwaysPipeline: pipeline, Rejected: func(*RejectError) { mu.Lock(); rejections++; mu.Unlock() }}
	ln, err := lc.Listen(context.Background(), "unix", path, UID(os.Getuid()+4242), Program("/bin/sh"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := ln.Accept(); err != nil {
				return
			}
			t.Error("a peer that fails the rules was accepted")
		}
	}()
	dialRejected(t, path) // warm up: lazily created runtime state
	before := markLeaks(t)
	for range 1000 {
		dialRejected(t, path)
	}
	// Rejected runs after the connection is closed: the client may see EOF
	// before the last report.
	reported := func() int { mu.Lock(); defer mu.Unlock(); return rejections }
	for deadline := time.Now().Add(5 * time.Second); reported() < 1001 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := reported(); n != 1001 {
		t.Errorf("%d rejections reported, want 1001", n)
	}
	before.check(t, "during 1000 rejections")
	ln.Close()
	<-done
}

// dialRejected connects to path and waits for the listener to close the
// connection, as it does when it rejects the peer.
func dialRejected(t *testing.T, path string) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("rejected connection: read %v, want EOF", err)
	}
}

// leakMark is what a process holds at a moment: its open fds and how
// many goroutines run.
type leakMark struct {
	fds        map[string]string
	goroutines int
}

func markLeaks(t *testing.T) leakMark {
	return leakMark{openFDs(t), runtime.NumGoroutine()}
}

// check reports fds opened since m that are still open, and goroutines
// beyond m's count (after giving them 10s to end).
func (m leakMark) check(t *testing.T, during string) {
	t.Helper()
	// Other tests' goroutines may close fds and end meanwhile, so look for
	// fds that were not open before rather than compare counts.
	for fd, target := range openFDs(t) {
		if m.fds[fd] != target {
			t.Errorf("fd %s (%s) opened %s is still open", fd, target, during)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > m.goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > m.goroutines {
		t.Errorf("goroutines: %d before, %d after, %s", m.goroutines, got, during)
	}
}

// openFDs maps each open fd of the process to what it refers to.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[string]string, len(entries))
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil {
			fds[e.Name()] = target
		}
	}
	return fds
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[int]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func itoa(i int) string { return strconv.Itoa(i) }

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestPeerAfterClose(t *testing.T) {
	h := listen(t, UID(os.Getuid()))
	startClient(t, peerBinary(t), h.path, "talk", nil)
	c := h.mustAccept(t)
	c.Close()
	p := c.Peer() // the rest can no longer be read; what was read stays valid
	if p.UID != os.Getuid() || p.PID == 0 {
		t.Fatalf("Peer after Close = %v, want the credentials read at accept", &p)
	}
	if err := UID(os.Getuid()).Check(&p); err != nil {
		t.Errorf("UID rule on the credentials read at accept: %v", err)
	}
	if err := p.Err(); err == nil || p.Program != "" {
		t.Errorf("Err = %v, Program = %q: want an error for what could not be read", err, p.Program)
	}
}
