package secnet

// Linux-only adversarial peers: a peer that execs after connecting, a
// connection handed to a process of another user, and a listener whose
// /proc is hidden or missing (a private mount namespace).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	childRoles["exec"] = runExec
	childRoles["execed"] = runExeced
	childRoles["fdpass"] = runFDPass
	childRoles["fdrecv"] = runFDRecv
	childRoles["nslistener"] = runNSListener
	childRoles["emfile-server"] = runEmfileServer
}

// runExec connects to SECNET_TEST_SOCK, lets the connection survive
// execve, and execs SECNET_TEST_EXEC (the test binary in role "execed",
// or a shell) in the same process.
func runExec() int {
	c, err := net.Dial("unix", os.Getenv("SECNET_TEST_SOCK"))
	if err != nil {
		fmt.Println("dial:", err)
		return 2
	}
	rc, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		fmt.Println(err)
		return 2
	}
	var ferr error
	rc.Control(func(fd uintptr) { _, ferr = unix.FcntlInt(fd, unix.F_SETFD, 0) }) // clear FD_CLOEXEC
	if ferr != nil {
		fmt.Println("fcntl:", ferr)
		return 2
	}
	target := os.Getenv("SECNET_TEST_EXEC")
	env := []string{"SECNET_TEST_ROLE=execed"} // execve keeps the first of duplicate names
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SECNET_TEST_ROLE=") {
			env = append(env, kv)
		}
	}
	err = syscall.Exec(target, []string{target, "-c", "echo execed; read line"}, env)
	fmt.Println("exec:", err)
	return 2
}

// runExeced is what runExec becomes when it execs the test binary: it
// says so and waits for its stdin to close, holding the connection.
func runExeced() int {
	fmt.Println("execed")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestPeerExecsAfterConnect shows what a Program rule proves: the
// executable of the peer process when the listener looks, not when it
// connected. A permitted program that connects and then execs a shell is
// rejected; a forbidden program that connects and then execs the
// permitted one is accepted (the known limit, see docs/threat-model.md).
func TestPeerExecsAfterConnect(t *testing.T) {
	bin := peerBinary(t)
	other := otherBinary(t)
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh:", err)
	}

	t.Run("allowed program execs a shell", func(t *testing.T) {
		h := listen(t, Program(bin))
		p := startPeer(t, bin, "exec", nil, "SECNET_TEST_SOCK="+h.path, "SECNET_TEST_EXEC=/bin/sh")
		if got := p.line(t); got != "execed" {
			t.Fatalf("peer: %q", got)
		}
		rej := h.mustReject(t)
		if rej.Peer.PID != p.cmd.Process.Pid || rej.Peer.Program != sh {
			t.Errorf("rejected %v, want pid %d running %s", &rej.Peer, p.cmd.Process.Pid, sh)
		}
	})

	t.Run("forbidden program execs the allowed one", func(t *testing.T) {
		h := listen(t, Program(bin))
		// Without exec, the other copy is rejected...
		startClient(t, other, h.path, "hold", nil).line(t)
		if rej := h.mustReject(t); rej.Peer.Program != other {
			t.Fatalf("rejected %v, want the copy %s", &rej.Peer, other)
		}
		// ...but once it has connected and exec'd the allowed program,
		// a listener that looks after the exec sees the allowed program.
		h = listen(t, Program(bin)) // its accept loop starts after the exec
		p := startPeer(t, other, "exec", nil, "SECNET_TEST_SOCK="+h.path, "SECNET_TEST_EXEC="+bin)
		if got := p.line(t); got != "execed" {
			t.Fatalf("peer: %q", got)
		}
		c := h.mustAccept(t)
		if got := c.Peer(); got.PID != p.cmd.Process.Pid || got.Program != bin {
			t.Errorf("accepted %v, want pid %d running %s", &got, p.cmd.Process.Pid, bin)
		}
	})
}

// startPeerFiles is startPeer with files the child inherits as fd 3, 4, ...
func startPeerFiles(t *testing.T, bin, role string, attr *syscall.SysProcAttr, files []*os.File, env ...string) *peerProc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append([]string{"SECNET_TEST_ROLE=" + role}, env...)...)
	cmd.SysProcAttr = attr
	cmd.ExtraFiles = files
	return startCmd(t, cmd)
}

// runFDPass connects to SECNET_TEST_SOCK, sends the connected socket over
// the Unix socket at fd 3 (SCM_RIGHTS), closes its own copy, says
// "passed" and stays alive until its stdin closes.
func runFDPass() int {
	c, err := net.Dial("unix", os.Getenv("SECNET_TEST_SOCK"))
	if err != nil {
		fmt.Println("dial:", err)
		return 2
	}
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		fmt.Println(err)
		return 2
	}
	c.Close()
	err = unix.Sendmsg(3, []byte("x"), unix.UnixRights(int(f.Fd())), nil, 0)
	f.Close()
	if err != nil {
		fmt.Println("sendmsg:", err)
		return 2
	}
	fmt.Println("passed")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// runFDRecv receives a connected socket over fd 3, says "received
// uid=N", waits for a line on stdin, writes "ping" on the socket and
// prints the answer.
func runFDRecv() int {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(3, buf, oob, 0)
	if err != nil {
		fmt.Println("recvmsg:", err)
		return 2
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		fmt.Println("no control message:", err)
		return 2
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		fmt.Println("no descriptor:", err)
		return 2
	}
	c, err := net.FileConn(os.NewFile(uintptr(fds[0]), "passed"))
	if err != nil {
		fmt.Println(err)
		return 2
	}
	fmt.Printf("received uid=%d\n", os.Getuid())
	bufioLine(os.Stdin)
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	reply := make([]byte, 4)
	n, _ := io.ReadFull(c, reply)
	fmt.Println(string(reply[:n]))
	return 0
}

// bufioLine reads up to a newline, a byte at a time (no buffering past it).
func bufioLine(r io.Reader) {
	b := make([]byte, 1)
	for {
		if n, err := r.Read(b); err != nil || (n == 1 && b[0] == '\n') {
			return
		}
	}
}

// TestPeerPassesConnectionToAnotherUser: a root peer running the allowed
// program connects, hands the connected socket to a process of user
// daemon (uid 1) with SCM_RIGHTS, and stays alive. The listener sees, and
// its rules check, the process that connected (uid 0, the allowed
// program), while daemon's process is the one talking. Per-message
// credentials (SO_PASSCRED) show the real sender.
func TestPeerPassesConnectionToAnotherUser(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	h := listen(t, UID(0), Program(bin))
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(pair[0]), "a"), os.NewFile(uintptr(pair[1]), "b")
	defer a.Close()
	defer b.Close()
	recv := startPeerFiles(t, bin, "fdrecv", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}}, []*os.File{b})
	pass := startPeerFiles(t, bin, "fdpass", nil, []*os.File{a}, "SECNET_TEST_SOCK="+h.path)
	a.Close() // the children hold them now
	b.Close()
	if got := pass.line(t); got != "passed" {
		t.Fatalf("passing peer: %q", got)
	}
	if got := recv.line(t); got != "received uid=1" {
		t.Fatalf("receiving peer: %q", got)
	}

	// Accept here rather than in the harness loop, which would read from
	// the connection.
	accepted := make(chan *SecureConn, 1)
	go func() {
		if c, err := h.ln.AcceptSecure(); err == nil {
			accepted <- c
		}
	}()
	var c *SecureConn
	select {
	case c = <-accepted:
	case rej := <-h.rejected:
		t.Fatalf("rejected, want accepted: %v", rej)
	case <-time.After(20 * time.Second):
		t.Fatal("nothing accepted within 20s")
	}
	defer c.Close()
	p := c.Peer()
	if p.PID != pass.cmd.Process.Pid || p.UID != 0 || p.Program != bin {
		t.Errorf("listener sees %v, want the connecting process %d (uid 0, %s)", &p, pass.cmd.Process.Pid, bin)
	}
	t.Logf("listener sees %v; the socket is held by pid %d, uid 1", &p, recv.cmd.Process.Pid)

	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(recv.stdin, "go\n")
	buf, oob := make([]byte, 4), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("no SCM_CREDENTIALS with the message: %v", err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if int(cred.Pid) != recv.cmd.Process.Pid || cred.Uid != 1 {
		t.Errorf("SCM_CREDENTIALS = pid %d uid %d, want the real sender %d uid 1", cred.Pid, cred.Uid, recv.cmd.Process.Pid)
	}
	c.Write([]byte("pong"))
	if got := recv.line(t); got != "pong" {
		t.Errorf("receiving peer read %q, want pong", got)
	}
}

// nsReport is what runNSListener prints for each rule it was given.
type nsReport struct {
	Rule            string
	Accepted        bool
	Reason          string // the rejection, if any
	ProcUnavailable bool   // errors.Is(reason, ErrProcUnavailable)
	Read            string // what the listener read of the peer
	ProcVisible     bool   // whether /proc/self exists for the listener
}

// runNSListener runs in a private mount namespace (the parent starts it
// with CLONE_NEWNS). According to SECNET_TEST_PROC it mounts a proc with
// hidepid=invisible over /proc ("hidepid"), an empty tmpfs ("tmpfs"), or
// leaves /proc alone ("none"); it creates one listener per rule in
// SECNET_TEST_RULES ("uid=0;program=/x") at SECNET_TEST_SOCK/<index>;
// then it switches to SECNET_TEST_UID if set, says "ready", and reports
// the verdict on the first connection of each listener, in order.
func runNSListener() int {
	fail := func(what string, err error) int {
		fmt.Printf("%s: %v\n", what, err)
		return 2
	}
	switch os.Getenv("SECNET_TEST_PROC") {
	case "hidepid":
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible"); err != nil {
			return fail("mount proc", err)
		}
	case "tmpfs":
		if err := unix.Mount("tmpfs", "/proc", "tmpfs", 0, "mode=0755,size=16k"); err != nil {
			return fail("mount tmpfs", err)
		}
	}
	type entry struct {
		spec     string
		ln       *Listener
		rejected chan *RejectError
	}
	var lns []entry
	for i, spec := range strings.Split(os.Getenv("SECNET_TEST_RULES"), ";") {
		k, v, _ := strings.Cut(spec, "=")
		var r Rule
		switch k {
		case "uid":
			id, _ := strconv.Atoi(v)
			r = UID(id)
		case "program":
			r = Program(v)
		default:
			return fail("rule", errors.New(spec))
		}
		e := entry{spec: spec, rejected: make(chan *RejectError, 1)}
		lc := ListenConfig{Mode: 0666, Rejected: func(rej *RejectError) { e.rejected <- rej }}
		ln, err := lc.Listen(context.Background(), "unix", filepath.Join(os.Getenv("SECNET_TEST_SOCK"), itoa(i)), r)
		if err != nil {
			return fail("listen", err)
		}
		e.ln = ln
		lns = append(lns, e)
	}
	if s := os.Getenv("SECNET_TEST_UID"); s != "" {
		id, _ := strconv.Atoi(s)
		if err := syscall.Setgroups(nil); err != nil {
			return fail("setgroups", err)
		}
		if err := syscall.Setgid(id); err != nil {
			return fail("setgid", err)
		}
		if err := syscall.Setuid(id); err != nil {
			return fail("setuid", err)
		}
	}
	_, err := os.Stat("/proc/self")
	procVisible := err == nil
	fmt.Println("ready")
	enc := json.NewEncoder(os.Stdout)
	for _, e := range lns {
		accepted := make(chan *SecureConn, 1)
		go func() {
			if c, err := e.ln.AcceptSecure(); err == nil {
				accepted <- c
			}
		}()
		rep := nsReport{Rule: e.spec, ProcVisible: procVisible}
		select {
		case c := <-accepted:
			rep.Accepted = true
			rep.Read = c.id.peer.known.String()
			c.Close()
		case rej := <-e.rejected:
			rep.Reason = rej.Error()
			rep.ProcUnavailable = errors.Is(rej, ErrProcUnavailable)
			rep.Read = rej.Peer.known.String()
		case <-time.After(20 * time.Second):
			return fail("accept", errors.New("no connection in 20s"))
		}
		e.ln.Close()
		enc.Encode(rep)
	}
	return 0
}

// TestListenerWithoutProc runs listeners in a private mount namespace
// whose /proc hides the peer or is not there at all. Program rules need
// /proc and must fail closed, saying why (ErrProcUnavailable); UID rules
// need nothing from /proc and must keep working: with an empty tmpfs over
// /proc, a UID rule that accepts proves that it never needed /proc, and
// the listener read the credentials only.
func TestListenerWithoutProc(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	rules := "uid=0;program=" + bin
	cases := []struct {
		name, proc, uid string
		procVisible     bool
		programPasses   bool
		reason          string // in the program rule's rejection
	}{
		{"control: root listener, normal /proc", "none", "", true, true, ""},
		{"listener uid 1, normal /proc (no ptrace-read access)", "none", "1", true, false, "permission denied"},
		{"listener uid 1, /proc hidepid=invisible", "hidepid", "1", true, false, "no such entry"},
		{"root listener, empty tmpfs over /proc", "tmpfs", "", false, false, "no such entry"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := sockDir(t)
			attr := &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go makes the mounts private
			ln := startPeer(t, bin, "nslistener", attr, "SECNET_TEST_SOCK="+dir, "SECNET_TEST_RULES="+rules,
				"SECNET_TEST_PROC="+tc.proc, "SECNET_TEST_UID="+tc.uid)
			if got := ln.line(t); got != "ready" {
				t.Fatalf("listener: %q", got)
			}
			for i := range 2 {
				peer := startClient(t, bin, filepath.Join(dir, itoa(i)), "hold", nil)
				if got := peer.line(t); got != "connected" {
					t.Fatalf("peer: %q", got)
				}
				var rep nsReport
				if err := json.Unmarshal([]byte(ln.line(t)), &rep); err != nil {
					t.Fatal(err)
				}
				peer.stdin.Close()
				if rep.ProcVisible != tc.procVisible {
					t.Fatalf("listener's /proc/self visible = %v, want %v: the namespace is not as intended", rep.ProcVisible, tc.procVisible)
				}
				switch {
				case strings.HasPrefix(rep.Rule, "uid"):
					if !rep.Accepted || rep.Read != "credentials" {
						t.Errorf("uid rule: accepted=%v read %q (%s), want accepted, credentials only", rep.Accepted, rep.Read, rep.Reason)
					}
				case tc.programPasses:
					if !rep.Accepted {
						t.Errorf("program rule rejected: %s", rep.Reason)
					}
				default:
					if rep.Accepted || !rep.ProcUnavailable || !strings.Contains(rep.Reason, tc.reason) {
						t.Errorf("program rule: accepted=%v, reason %q; want rejected with ErrProcUnavailable saying %q",
							rep.Accepted, rep.Reason, tc.reason)
					}
					t.Logf("program rule: %s", rep.Reason)
				}
			}
			ln.wait(t)
		})
	}
}

// runEmfileServer runs http.Serve over a verified listener on
// SECNET_TEST_SOCK with a file descriptor limit that leaves room for
// about SECNET_TEST_N connections. The server's error log goes to stdout.
func runEmfileServer() int {
	lc := ListenConfig{alwaysPipeline: os.Getenv("SECNET_TEST_MODE") == "pipeline"}
	ln, err := lc.Listen(context.Background(), "unix", os.Getenv("SECNET_TEST_SOCK"), UID(os.Getuid()))
	if err != nil {
		fmt.Println("listen:", err)
		return 2
	}
	spare, _ := strconv.Atoi(os.Getenv("SECNET_TEST_N"))
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fmt.Println("counting fds:", err)
		return 2
	}
	// New descriptors take the lowest free numbers, and the limit bounds
	// the number: leave exactly spare free numbers below it (descriptors
	// inherited with high numbers stay open and do not count).
	used := map[int]bool{}
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			used[n] = true
		}
	}
	limit := 0
	for free := 0; free < spare; limit++ { // (plus the one ReadDir used, free again)
		if !used[limit] {
			free++
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("getrlimit:", err)
		return 2
	}
	lim.Cur = uint64(limit)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("setrlimit:", err)
		return 2
	}
	var mu sync.Mutex // the log and the handler share stdout
	out := writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return os.Stdout.Write(b)
	})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "served")
		}),
		ErrorLog: log.New(out, "", 0),
	}
	fmt.Fprintf(out, "ready (fd limit %d)\n", lim.Cur)
	err = srv.Serve(ln)
	fmt.Fprintln(out, "Serve returned:", err)
	return 1
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestListenerOutOfFileDescriptors runs http.Serve over a secnet listener
// in a child process with a low RLIMIT_NOFILE. Once the child holds as
// many connections as its limit allows, accept fails with EMFILE: the
// error must reach http.Server as a temporary one (it logs "http: Accept
// error ... retrying" and backs off instead of returning), and the server
// must serve again once connections are closed.
func TestListenerOutOfFileDescriptors(t *testing.T) {
	requireLinux(t)
	// A UID rule is verified in Accept; the pipeline is tested too.
	for _, mode := range []string{"inline", "pipeline"} {
		t.Run(mode, func(t *testing.T) { listenerOutOfFileDescriptors(t, mode) })
	}
}

func listenerOutOfFileDescriptors(t *testing.T, mode string) {
	path := filepath.Join(sockDir(t), "s")
	const spare = 4
	srv := startPeer(t, peerBinary(t), "emfile-server", nil, "SECNET_TEST_SOCK="+path, "SECNET_TEST_N="+itoa(spare), "SECNET_TEST_MODE="+mode)
	t.Cleanup(func() { srv.cmd.Process.Kill() })
	if got := srv.line(t); !strings.HasPrefix(got, "ready") {
		t.Fatalf("server: %q", got)
	} else {
		t.Log(got)
	}
	// Hold more idle connections than the server has descriptors for:
	// http.Server keeps each one open waiting for a request.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range spare + 8 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for {
		got := srv.line(t) // fails the test if the server says nothing for 20s
		if strings.HasPrefix(got, "Serve returned") {
			t.Fatalf("http.Server stopped on an accept error instead of retrying: %s", got)
		}
		if strings.HasPrefix(got, "http: Accept error") {
			if !strings.Contains(got, "too many open files") || !strings.Contains(got, "retrying in") {
				t.Fatalf("accept error %q, want EMFILE and a retry", got)
			}
			t.Logf("server log: %s", got)
			break
		}
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	// A plain HTTP/1.0 request on a connection of our own: nothing of an
	// http.Client lingers after the test.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	resp, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.0 200 OK") || !strings.HasSuffix(string(resp), "\r\n\r\nserved") {
		t.Fatalf("after the fds were freed, the server did not serve: %q, %v", resp, err)
	}
}
