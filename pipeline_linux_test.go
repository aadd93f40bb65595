package secnet

import (
	"errors"
	"testing"
	"time"
)

// TestStalledFUSEPeerDoesNotDelayOthers runs a peer from a FUSE mount
// (bindfs) and stops the FUSE daemon (SIGSTOP) before the listener looks
// at the peer: reading its executable for ProgramDigest waits on a daemon
// that does not answer. A peer running a local copy of the same program
// is accepted meanwhile; once the daemon runs again the worker returns
// and the stalled peer is rejected for the deadline.
func TestStalledFUSEPeerDoesNotDelayOthers(t *testing.T) {
	requireLinux(t)
	f := mountFUSECopy(t)
	bin := f.onFUSE
	const timeout = 500 * time.Millisecond
	h := listenConfig(t, ListenConfig{Mode: 0666, VerifyTimeout: timeout}, ProgramDigest(fileSHA256(t, bin)))
	// Runs before the listener's cleanup: Close waits for the stalled worker.
	t.Cleanup(f.resume)
	stalled := startClient(t, bin, h.path, "announce", nil)
	// Connected, the peer waits for the answer; the listener has not
	// looked at it yet (it starts with the first Accept).
	if got := stalled.line(t); got != "connected" {
		t.Fatalf("FUSE peer: %q", got)
	}
	f.stop(t)
	h.start()
	begin := time.Now()
	allowed := startClient(t, f.local, h.path, "talk", nil)
	c := h.mustAccept(t)
	t.Logf("local peer accepted %v after it started, while the FUSE peer's verification waited on a stopped daemon", time.Since(begin))
	if c.Peer().PID != allowed.cmd.Process.Pid {
		t.Errorf("accepted pid %d, want %d", c.Peer().PID, allowed.cmd.Process.Pid)
	}
	if got := allowed.line(t); got != "pong" {
		t.Errorf("local peer read %q, want pong", got)
	}
	// Past the deadline, let the daemon answer: the worker returns, and
	// the peer (which the stopped daemon may have stalled too, in a page
	// fault) sees its connection closed.
	time.Sleep(time.Until(begin.Add(timeout + 100*time.Millisecond)))
	f.resume()
	if got := stalled.line(t); got != "closed" {
		t.Errorf("FUSE peer read %q, want its connection closed", got)
	}
	rej := h.mustReject(t)
	if rej.Peer.PID != stalled.cmd.Process.Pid || !errors.Is(rej, ErrVerifyTimeout) {
		t.Fatalf("rejection %v, want ErrVerifyTimeout for pid %d", rej, stalled.cmd.Process.Pid)
	}
	t.Log(rej)
}
