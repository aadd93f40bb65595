package secnet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDialVerifiesServer(t *testing.T) {
	h := listen(t, Anyone())
	h.start()
	c, err := Dial("unix", h.path, UID(os.Getuid()), Program(mustExecutable(t)))
	if err != nil {
		t.Fatalf("Dial a server that passes: %v", err)
	}
	defer c.Close()
	if p := c.Peer(); p.PID != os.Getpid() {
		t.Errorf("server pid = %d, want %d", p.PID, os.Getpid())
	}
	h.mustAccept(t)

	_, err = Dial("unix", h.path, UID(os.Getuid()+4242))
	var rej *RejectError
	if !errors.As(err, &rej) || !errors.Is(err, ErrRejected) || rej.Failures[0].Rule != "uid" {
		t.Fatalf("Dial a server that fails: %v, want a *RejectError naming uid", err)
	}
	h.mustAccept(t) // the server accepted that connection: close it
	if _, err := Dial("unix", filepath.Join(sockDir(t), "none"), Anyone()); err == nil {
		t.Fatal("Dial of a missing socket succeeded")
	}
	if _, err := Dial("unix", h.path); err == nil {
		t.Fatal("Dial without rules succeeded")
	}
}

func mustExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestDialRefusesServerOfAnotherUser runs the server as uid 1, as a socket
// path taken over by another user would be: the client that requires
// root refuses it and names the rule.
func TestDialRefusesServerOfAnotherUser(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	dir := filepath.Join(sockDir(t), "d")
	if err := os.Mkdir(dir, 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 1, 1); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	srv := startPeer(t, bin, "server", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}},
		"SECNET_TEST_SOCK="+sock)
	if got := srv.line(t); got != "ready" {
		t.Fatalf("server said %q", got)
	}
	c, err := Dial("unix", sock, UID(0), Program(bin))
	var rej *RejectError
	if !errors.As(err, &rej) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("Dial of a server run by uid 1 with UID(0): %v, want a *RejectError", err)
	}
	if len(rej.Failures) != 1 || rej.Failures[0].Rule != "uid" || rej.Peer.UID != 1 || rej.Peer.PID != srv.cmd.Process.Pid {
		t.Errorf("rejection %v: want only the uid rule to fail, for uid 1 and pid %d", rej, srv.cmd.Process.Pid)
	}
	if !strings.Contains(err.Error(), "uid: peer uid 1 is not 0") {
		t.Errorf("error %q does not say why", err)
	}
	srv.wait(t) // the server saw the connection and exited
}
