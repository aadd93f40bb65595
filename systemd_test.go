package secnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// runActivated is the "activated" role: a server started the way systemd
// starts a socket-activated service. It takes the listening socket from
// fd 3 (LISTEN_FDS=1, LISTEN_PID=its own pid), wraps it with NewListener
// and the rules ("uid=N"), prints "ready", then for each connection
// prints "accepted pid=P uid=U" (and writes the same line to the client)
// or "rejected: <reason>", until stdin closes.
func runActivated(rules string) int {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") != "1" {
		fmt.Printf("not socket-activated: LISTEN_PID=%q LISTEN_FDS=%q, my pid %d\n",
			os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getpid())
		return 2
	}
	f := os.NewFile(3, "activated")
	inner, err := net.FileListener(f) // dups the fd
	f.Close()
	if err != nil {
		fmt.Println("FileListener:", err)
		return 2
	}
	uid, _ := strconv.Atoi(strings.TrimPrefix(rules, "uid="))
	ln := NewListener(inner, UID(uid))
	ln.SetRejected(func(e *RejectError) { fmt.Println("rejected:", e) })
	go func() {
		// The parent closes stdin to stop the server.
		os.Stdin.Read(make([]byte, 1))
		ln.Close()
	}()
	fmt.Println("ready")
	for {
		c, err := ln.AcceptSecure()
		if errors.Is(err, net.ErrClosed) {
			return 0
		}
		if err != nil {
			fmt.Println("accept:", err)
			return 2
		}
		p := c.Peer()
		line := fmt.Sprintf("accepted pid=%d uid=%d", p.PID, p.UID)
		fmt.Println(line)
		fmt.Fprintln(c, line)
		c.Close()
	}
}

// TestSocketActivation passes a listening socket to a child as systemd
// does (fd 3, LISTEN_FDS=1, LISTEN_PID set to the child's pid by a shell
// that then execs the child), and checks that NewListener over
// net.FileListener verifies the clients that connect to it.
func TestSocketActivation(t *testing.T) {
	bin := peerBinary(t)
	sock := filepath.Join(sockDir(t), "a")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0666); err != nil {
		t.Fatal(err)
	}
	f, err := ul.File()
	if err != nil {
		t.Fatal(err)
	}
	// The child has its own copy of the socket; the parent keeps neither
	// (and leaves the file in place for the child).
	ul.SetUnlinkOnClose(false)
	ul.Close()
	defer f.Close()

	// The shell knows its pid before exec; exec keeps the pid and fd 3.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0"`, bin)
	cmd.Env = append(os.Environ(), "SECNET_TEST_ROLE=activated", "SECNET_TEST_RULES=uid="+strconv.Itoa(os.Getuid()))
	cmd.ExtraFiles = []*os.File{f}
	srv := startCmd(t, cmd)
	f.Close()
	if got := srv.line(t); got != "ready" {
		t.Fatalf("activated server said %q", got)
	}

	// A client that passes: the server sees it, and the client verifies
	// the server (the process that created the socket is this test).
	c, err := Dial("unix", sock, SameUser())
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("accepted pid=%d uid=%d", os.Getpid(), os.Getuid())
	if got := srv.line(t); got != want {
		t.Errorf("server: %q, want %q", got, want)
	}
	buf := make([]byte, 100)
	n, _ := c.Read(buf)
	if got := strings.TrimSpace(string(buf[:n])); got != want {
		t.Errorf("client read %q, want %q", got, want)
	}
	c.Close()

	t.Run("OtherUserRejected", func(t *testing.T) {
		requireRoot(t)
		cl := startClient(t, bin, sock, "talk", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}})
		if got := srv.line(t); !strings.HasPrefix(got, "rejected: ") || !strings.Contains(got, "uid: peer uid 1 is not") {
			t.Errorf("server: %q, want a rejection of uid 1", got)
		}
		if got := cl.line(t); got != "closed" {
			t.Errorf("rejected client read %q, want closed", got)
		}
	})

	srv.stdin.Close()
	srv.wait(t)
	if err := <-srv.done; err != nil {
		t.Errorf("activated server: %v", err)
	}
	srv.done <- nil // for the cleanup of startCmd
}
