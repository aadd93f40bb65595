package secnet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the peer: with SECNET_TEST_ROLE set it runs
// as a client or a server instead of the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("SECNET_TEST_ROLE") {
	case "client":
		os.Exit(runClient(os.Getenv("SECNET_TEST_SOCK"), os.Getenv("SECNET_TEST_MODE")))
	case "server":
		os.Exit(runServer(os.Getenv("SECNET_TEST_SOCK"), os.Getenv("SECNET_TEST_RULES")))
	case "httpclient":
		os.Exit(runHTTPClient(os.Getenv("SECNET_TEST_SOCK"), os.Getenv("SECNET_TEST_MODE")))
	case "activated":
		os.Exit(runActivated(os.Getenv("SECNET_TEST_RULES")))
	default:
		if run, ok := childRoles[os.Getenv("SECNET_TEST_ROLE")]; ok {
			os.Exit(run())
		}
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// childRoles holds further roles of the test binary, registered by the
// init functions of other test files.
var childRoles = map[string]func() int{}

// runClient connects to sock. Modes:
//
//	talk  write "ping", print what comes back ("pong" or "closed")
//	announce  print "connected", then talk
//	wait  read a line from stdin, then talk
//	exit  connect and exit at once
//	hold  connect, print "connected", wait for stdin to close
func runClient(sock, mode string) int {
	if mode == "wait" {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Println("dial:", err)
		return 2
	}
	switch mode {
	case "exit":
		return 0
	case "hold":
		fmt.Println("connected")
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "announce":
		fmt.Println("connected")
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 16)
	n, _ := io.ReadFull(c, buf[:4])
	if n == 0 {
		fmt.Println("closed")
		return 0
	}
	fmt.Println(string(buf[:n]))
	return 0
}

// serverReport is what runServer prints about the one peer it accepts.
type serverReport struct {
	PID, UID, GID int
	Program       string
	Cgroup        string
	Unmapped      bool // Peer.UnmappedIDs
	Err           string
	Verdicts      map[string]string // rule spec -> "pass" or the reason
}

// runServer listens on sock with Anyone, prints "ready", accepts one
// connection and prints a serverReport as JSON, with the verdict of each
// rule in rules ("uid=1;program=/bin/x").
func runServer(sock, rules string) int {
	lc := ListenConfig{Mode: 0666}
	ln, err := lc.Listen(context.Background(), "unix", sock, Anyone())
	if err != nil {
		fmt.Println("listen:", err)
		return 2
	}
	defer ln.Close()
	fmt.Println("ready")
	c, err := ln.AcceptSecure()
	if err != nil {
		fmt.Println("accept:", err)
		return 2
	}
	defer c.Close()
	p := c.Peer()
	rep := serverReport{PID: p.PID, UID: p.UID, GID: p.GID, Program: p.Program, Verdicts: map[string]string{}}
	rep.Cgroup, rep.Unmapped = p.Cgroup, p.UnmappedIDs()
	if err := p.Err(); err != nil {
		rep.Err = err.Error()
	}
	for _, spec := range strings.Split(rules, ";") {
		if spec == "" {
			continue
		}
		k, v, _ := strings.Cut(spec, "=")
		var r Rule
		switch k {
		case "uid":
			id, _ := strconv.Atoi(v)
			r = UID(id)
		case "program":
			r = Program(v)
		default:
			var ok bool
			if r, ok = containerRule(k, v); !ok {
				fmt.Println("unknown rule", k)
				return 2
			}
		}
		rep.Verdicts[spec] = "pass"
		if err := r.Check(&p); err != nil {
			rep.Verdicts[spec] = err.Error()
		}
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	if os.Getenv("SECNET_TEST_SERVER_WAIT") != "" {
		// Stay alive until the client has verified this server and says
		// so with a byte (or closes).
		c.Read(make([]byte, 1))
	}
	return 0
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// peerBinary returns a copy of the test binary that every user can run,
// in a directory every user can enter.
func peerBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "snbin")
		if binErr != nil {
			return
		}
		os.Chmod(binDir, 0755)
		binPath = filepath.Join(binDir, "peer")
		binErr = copyExecutable(binPath)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// copyExecutable copies the running test binary to dst, mode 0755.
func copyExecutable(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// sockDir returns a short directory (sun_path holds 108 bytes) that every
// user can enter, removed after the test.
func sockDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// peerProc is a child process started as a client or server.
type peerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	done  chan error
}

// startPeer runs bin (the test binary or a copy) in role with the
// environment env, and the given process attributes.
func startPeer(t testing.TB, bin, role string, attr *syscall.SysProcAttr, env ...string) *peerProc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append([]string{"SECNET_TEST_ROLE=" + role}, env...)...)
	cmd.SysProcAttr = attr
	return startCmd(t, cmd)
}

// startCmd starts cmd as a peer: its stdin and stdout are pipes to the
// test, and it is stopped when the test ends.
func startCmd(t testing.TB, cmd *exec.Cmd) *peerProc {
	t.Helper()
	attr := cmd.SysProcAttr
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	// A race-enabled peer would sleep a second at exit; GORACE from the
	// environment still wins.
	cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A pipe of our own, not StdoutPipe: Wait must not close the reading
	// end before the output is read.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		if attr != nil {
			t.Skipf("cannot start a peer with %+v: %v", attr, err)
		}
		t.Fatal(err)
	}
	p := &peerProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(pr), done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case err := <-p.done:
			p.done <- err
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		pr.Close()
	})
	return p
}

// client starts a client of sock in mode.
func startClient(t *testing.T, bin, sock, mode string, attr *syscall.SysProcAttr) *peerProc {
	return startPeer(t, bin, "client", attr, "SECNET_TEST_SOCK="+sock, "SECNET_TEST_MODE="+mode)
}

// line reads one line of the child's output.
func (p *peerProc) line(t testing.TB) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := p.out.ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && r.s == "" {
			t.Fatalf("reading from peer %d: %v", p.cmd.Process.Pid, r.err)
		}
		return strings.TrimSpace(r.s)
	case <-time.After(20 * time.Second):
		t.Fatalf("peer %d said nothing for 20s", p.cmd.Process.Pid)
	}
	return ""
}

// wait waits for the child to exit.
func (p *peerProc) wait(t testing.TB) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(20 * time.Second):
		t.Fatalf("peer %d did not exit", p.cmd.Process.Pid)
	}
}

// harness is a verified listener with channels for what it accepts and
// rejects.
type harness struct {
	ln       *Listener
	path     string
	accepted chan *SecureConn
	rejected chan *RejectError
	loopOnce sync.Once
	loopDone chan struct{}
}

// listen starts a listener (mode 0666) on a new socket path with rules;
// call start (or next, which calls it) to run its accept loop.
func listen(t *testing.T, rules ...Rule) *harness {
	t.Helper()
	return listenConfig(t, ListenConfig{Mode: 0666}, rules...)
}

// listenConfig is listen with the options of lc; its Rejected function
// is replaced by the harness's.
func listenConfig(t *testing.T, lc ListenConfig, rules ...Rule) *harness {
	t.Helper()
	h := &harness{
		path:     filepath.Join(sockDir(t), "s"),
		accepted: make(chan *SecureConn, 64),
		rejected: make(chan *RejectError, 64),
		loopDone: make(chan struct{}),
	}
	lc.Rejected = func(e *RejectError) { h.rejected <- e }
	ln, err := lc.Listen(context.Background(), "unix", h.path, rules...)
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	t.Cleanup(func() {
		ln.Close()
		h.loopOnce.Do(func() { close(h.loopDone) })
		<-h.loopDone
		// Close what the test did not take, so that no connection is left
		// for a finalizer to close during a later test's fd count.
		for {
			select {
			case c := <-h.accepted:
				c.Close()
			default:
				return
			}
		}
	})
	return h
}

// start runs the accept loop: accepted connections are answered "pong"
// when the peer writes, and sent on h.accepted.
func (h *harness) start() {
	h.loopOnce.Do(func() {
		go func() {
			defer close(h.loopDone)
			for {
				c, err := h.ln.AcceptSecure()
				if err != nil {
					return
				}
				go func() {
					buf := make([]byte, 4)
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(c, buf); err == nil {
						c.Write([]byte("pong"))
					}
				}()
				h.accepted <- c
			}
		}()
	})
}

// next waits for the next verdict of the listener: exactly one of the
// results is non-nil.
func (h *harness) next(t *testing.T) (*SecureConn, *RejectError) {
	t.Helper()
	h.start()
	select {
	case c := <-h.accepted:
		t.Cleanup(func() { c.Close() })
		return c, nil
	case e := <-h.rejected:
		return nil, e
	case <-time.After(20 * time.Second):
		t.Fatal("no connection was accepted or rejected within 20s")
	}
	return nil, nil
}

// mustAccept waits for the next verdict and fails the test if it is a
// rejection.
func (h *harness) mustAccept(t *testing.T) *SecureConn {
	t.Helper()
	c, rej := h.next(t)
	if rej != nil {
		t.Fatalf("rejected, want accepted: %v", rej)
	}
	return c
}

// mustReject waits for the next verdict and fails the test if it is an
// accepted connection.
func (h *harness) mustReject(t *testing.T) *RejectError {
	t.Helper()
	c, rej := h.next(t)
	if c != nil {
		t.Fatalf("accepted peer %v, want rejected", c.Peer())
	}
	return rej
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts peers with other credentials")
	}
}
