package secnet

import (
	"errors"
	"os"
	"path/filepath"
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
