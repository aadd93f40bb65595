package secnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	childRoles["execpeer"] = func() int {
		return runExecPeer(os.Getenv("SECNET_TEST_SOCK"), os.Getenv("SECNET_TEST_EXEC"))
	}
}

// runExecPeer connects to sock, keeps the socket open across execve,
// prints "connected", and on a line from stdin replaces itself with the
// program prog, which inherits stdin, stdout and the socket.
func runExecPeer(sock, prog string) int {
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Println("dial:", err)
		return 2
	}
	rc, err := c.(*net.UnixConn).SyscallConn()
	if err == nil {
		rc.Control(func(fd uintptr) { _, err = unix.FcntlInt(fd, unix.F_SETFD, 0) })
	}
	if err != nil {
		fmt.Println("fcntl:", err)
		return 2
	}
	fmt.Println("connected")
	var b [1]byte
	for b[0] != '\n' { // byte by byte: what follows the line is for prog
		if _, err := os.Stdin.Read(b[:]); err != nil {
			return 0
		}
	}
	err = syscall.Exec(prog, []string{prog}, os.Environ())
	fmt.Println("exec:", err)
	return 2
}

// keepListen is listen with KeepPidfd, optionally without SO_PEERPIDFD.
func keepListen(t *testing.T, fallback bool, rules ...Rule) *harness {
	t.Helper()
	h := listen(t, rules...)
	h.ln.SetKeepPidfd(true)
	h.ln.v.opts.noPeerPidfd = fallback
	return h
}

var pidfdModes = []struct {
	name     string
	fallback bool
}{{"SO_PEERPIDFD", false}, {"pidfd_open fallback", true}}

func TestRecheckPeerExits(t *testing.T) {
	bin := peerBinary(t)
	for _, m := range pidfdModes {
		t.Run(m.name, func(t *testing.T) {
			h := keepListen(t, m.fallback, UID(os.Geteuid()))
			cl := startClient(t, bin, h.path, "hold", nil)
			c := h.mustAccept(t)
			if s := cl.line(t); s != "connected" {
				t.Fatalf("client said %q", s)
			}
			for range 3 {
				if err := c.Recheck(); err != nil {
					t.Fatalf("Recheck of a live peer: %v", err)
				}
			}
			cl.stdin.Close()
			cl.wait(t)
			if err := c.Recheck(); !errors.Is(err, ErrPeerExited) {
				t.Fatalf("Recheck after the peer exited = %v, want ErrPeerExited", err)
			}
		})
	}
}

func TestRecheckPeerExecs(t *testing.T) {
	bin := peerBinary(t)
	cat, err := filepath.EvalSymlinks("/bin/cat")
	if err != nil {
		t.Skip("no /bin/cat to exec:", err)
	}
	for _, m := range pidfdModes {
		for _, program := range []bool{false, true} {
			name := m.name + map[bool]string{false: "/uid rule", true: "/program rule"}[program]
			t.Run(name, func(t *testing.T) {
				rule := UID(os.Geteuid())
				if program {
					rule = Program(bin)
				}
				h := keepListen(t, m.fallback, rule)
				cl := startPeer(t, bin, "execpeer", nil, "SECNET_TEST_SOCK="+h.path, "SECNET_TEST_EXEC="+cat)
				c := h.mustAccept(t)
				if s := cl.line(t); s != "connected" {
					t.Fatalf("peer said %q", s)
				}
				if err := c.Recheck(); err != nil {
					t.Fatalf("Recheck before exec: %v", err)
				}
				// cat echoes what follows the line: once "ping" comes
				// back, the peer runs cat.
				cl.stdin.Write([]byte("exec\nping\n"))
				if s := cl.line(t); s != "ping" {
					t.Fatalf("peer said %q after exec, want the echo of cat", s)
				}
				err := c.Recheck()
				if !errors.Is(err, ErrProgramChanged) || !strings.Contains(err.Error(), cat) {
					t.Fatalf("Recheck after exec = %v, want ErrProgramChanged naming %s", err, cat)
				}
				// The socket survived the exec: the peer that holds it now
				// runs cat, which is what Recheck reports.
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("read from the exec'd peer: %v, want a timeout (socket still open)", err)
				}
				cl.stdin.Close()
				cl.wait(t)
				if err := c.Recheck(); !errors.Is(err, ErrPeerExited) {
					t.Fatalf("Recheck after cat exited = %v, want ErrPeerExited", err)
				}
			})
		}
	}
}

func TestRecheckNotKept(t *testing.T) {
	bin := peerBinary(t)
	h := listen(t, UID(os.Geteuid()))
	startClient(t, bin, h.path, "hold", nil)
	c := h.mustAccept(t)
	if err := c.Recheck(); !errors.Is(err, ErrNoPidfd) {
		t.Fatalf("Recheck without KeepPidfd = %v, want ErrNoPidfd", err)
	}
}

func TestRecheckAfterClose(t *testing.T) {
	bin := peerBinary(t)
	h := keepListen(t, false, UID(os.Geteuid()))
	startClient(t, bin, h.path, "hold", nil)
	c := h.mustAccept(t)
	if err := c.Recheck(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err == nil {
		t.Error("second Close returned nil, want the error of closing a closed conn")
	}
	if err := c.Recheck(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Recheck after Close = %v, want net.ErrClosed", err)
	}
}

// TestRecheckExitedBeforeAccept checks that a peer gone before accept is
// still accepted by rules that do not need the process, keeps no pidfd,
// and fails Recheck.
func TestRecheckExitedBeforeAccept(t *testing.T) {
	bin := peerBinary(t)
	for _, m := range pidfdModes {
		t.Run(m.name, func(t *testing.T) {
			h := keepListen(t, m.fallback, UID(os.Geteuid()))
			before := countPidfds(t)
			cl := startClient(t, bin, h.path, "exit", nil)
			cl.wait(t)
			c := h.mustAccept(t)
			if err := c.Recheck(); !errors.Is(err, ErrPeerExited) {
				t.Fatalf("Recheck = %v, want ErrPeerExited", err)
			}
			if n := countPidfds(t); n != before {
				t.Fatalf("%d pidfds open, want %d: a pidfd was kept for an exited peer", n, before)
			}
		})
	}
}

func TestDialerRecheck(t *testing.T) {
	bin := peerBinary(t)
	sock := filepath.Join(sockDir(t), "s")
	// The server waits for a byte before it exits, so that it is alive
	// while the dialer verifies it.
	srv := startPeer(t, bin, "server", nil, "SECNET_TEST_SOCK="+sock, "SECNET_TEST_SERVER_WAIT=1")
	if s := srv.line(t); s != "ready" {
		t.Fatalf("server said %q", s)
	}
	d := Dialer{Rules: []Rule{Program(bin)}, KeepPidfd: true}
	c, err := d.DialSecure(context.Background(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	srv.line(t) // its report: it has accepted and now exits
	srv.wait(t)
	if err := c.Recheck(); !errors.Is(err, ErrPeerExited) {
		t.Fatalf("Recheck after the server exited = %v, want ErrPeerExited", err)
	}

	// This process as the server: alive, same executable.
	ln, err := net.Listen("unix", filepath.Join(sockDir(t), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d.Rules = []Rule{SameUser()}
	c3, err := d.DialSecure(context.Background(), "unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := c3.Recheck(); err != nil {
		t.Fatalf("Recheck of this process = %v", err)
	}
}

// countPidfds counts this process's open pidfds.
func countPidfds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "anon_inode:[pidfd]" {
			n++
		}
	}
	return n
}

// TestKeepPidfdCount checks that KeepPidfd keeps one pidfd per open
// connection, that Close releases it, and that a connection dropped
// without Close does not keep it forever.
func TestKeepPidfdCount(t *testing.T) {
	const n = 100
	lc := ListenConfig{KeepPidfd: true}
	ln, err := lc.Listen(context.Background(), "unix", filepath.Join(sockDir(t), "s"), UID(os.Geteuid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	open := func() ([]*SecureConn, []net.Conn) {
		var servers []*SecureConn
		var clients []net.Conn
		for range n {
			cl, err := net.Dial("unix", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, cl)
			sc, err := ln.AcceptSecure()
			if err != nil {
				t.Fatal(err)
			}
			if err := sc.Recheck(); err != nil {
				t.Fatal(err)
			}
			servers = append(servers, sc)
		}
		return servers, clients
	}
	before := countPidfds(t)
	servers, clients := open()
	if got := countPidfds(t) - before; got != n {
		t.Fatalf("%d pidfds for %d connections, want one each", got, n)
	}
	for _, c := range servers {
		c.Close()
		c.Close()
	}
	if got := countPidfds(t) - before; got != 0 {
		t.Fatalf("%d pidfds left open after Close", got)
	}
	for _, c := range clients {
		c.Close()
	}

	// Dropped without Close: the garbage collector closes them.
	_, clients = open() // the server side is dropped at once
	deadline := time.Now().Add(10 * time.Second)
	for countPidfds(t) != before && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := countPidfds(t) - before; got != 0 {
		t.Fatalf("%d pidfds of dropped connections still open", got)
	}
	for _, c := range clients {
		c.Close()
	}
}
