package secnet

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Code that asserts *net.UnixConn and reads SO_PEERCRED itself (as ttrpc's
// UnixCredentialsFunc does) works over UnixConns: it gets only verified
// connections, as *net.UnixConn, and the pidfd KeepPidfd kept is released.
func TestUnixConnsForCodeThatAssertsUnixConn(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	var rejected atomic.Int64
	lc := ListenConfig{Mode: 0666, KeepPidfd: true, Rejected: func(*RejectError) { rejected.Add(1) }}
	path := filepath.Join(sockDir(t), "s")
	ln, err := lc.Listen(context.Background(), "unix", path, UID(os.Geteuid()), Program(bin))
	if err != nil {
		t.Fatal(err)
	}
	raw := ln.UnixConns()
	defer raw.Close()
	if raw.Addr().String() != path {
		t.Errorf("Addr = %q, want %q", raw.Addr(), path)
	}

	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := raw.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	// Another uid first: rejected, never handed on.
	other := startClient(t, bin, path, "echo", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242}})
	for deadline := time.Now().Add(10 * time.Second); rejected.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the peer of another uid was not rejected within 10s")
		}
	}
	other.wait(t)
	// The allowed peer connects once told to. os/exec holds a pidfd for
	// each child too: the pidfds are counted between its start and the
	// connection's Accept.
	cl := startClient(t, bin, path, "wait", nil)
	pidfds := func() (n int) {
		for _, target := range openFDs(t) {
			if strings.Contains(target, "pidfd") {
				n++
			}
		}
		return n
	}
	before := pidfds()
	io.WriteString(cl.stdin, "go\n")
	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("the allowed peer was not accepted within 20s")
	}
	defer c.Close()

	// What ttrpc's requireUnixSocket and tailscale's peercred do.
	uc, ok := c.(*net.UnixConn)
	if !ok {
		t.Fatalf("Accept returned %T, want *net.UnixConn", c)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cred *unix.Ucred
	var credErr error
	rc.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if credErr != nil || int(cred.Uid) != os.Geteuid() || int(cred.Pid) != cl.cmd.Process.Pid {
		t.Errorf("SO_PEERCRED of the connection: %+v, %v; want uid %d pid %d", cred, credErr, os.Geteuid(), cl.cmd.Process.Pid)
	}
	if _, ok := PeerOf(c); ok {
		t.Error("PeerOf found an identity in the *net.UnixConn")
	}
	if after := pidfds(); after != before {
		t.Errorf("%d pidfds open before the peer connected, %d once Accept handed on its connection: the kept pidfd was not released", before, after)
	}

	buf := make([]byte, 4)
	if _, err := io.ReadFull(uc, buf); err != nil {
		t.Fatal(err)
	}
	uc.Write([]byte("pong"))
	if got := cl.line(t); got != "pong" {
		t.Errorf("client read %q", got)
	}
	select {
	case extra := <-accepted:
		t.Errorf("a second connection was handed on: %v", extra.RemoteAddr())
	default:
	}
}
