package secnet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStalledFUSEPeerDoesNotDelayOthers runs a peer from a FUSE mount
// (bindfs) and stops the FUSE daemon (SIGSTOP) before the listener looks
// at the peer: reading its executable for ProgramDigest waits on a daemon
// that does not answer. A peer running a local copy of the same program
// is accepted meanwhile; once the daemon runs again the worker returns
// and the stalled peer is rejected for the deadline.
func TestStalledFUSEPeerDoesNotDelayOthers(t *testing.T) {
	requireLinux(t)
	requireRoot(t)
	bindfs, err := exec.LookPath("bindfs")
	if err != nil {
		t.Skip("needs bindfs (package bindfs) to mount a FUSE file system")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse:", err)
	}
	dir := sockDir(t)
	src, mnt := filepath.Join(dir, "src"), filepath.Join(dir, "mnt")
	for _, d := range []string{src, mnt} {
		if err := os.Mkdir(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyExecutable(filepath.Join(src, "peer")); err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(bindfs, "-f", src, mnt) // in the foreground: its pid is ours to stop
	if err := daemon.Start(); err != nil {
		t.Skip("bindfs:", err)
	}
	t.Cleanup(func() {
		daemon.Process.Signal(syscall.SIGCONT)
		unix.Unmount(mnt, unix.MNT_DETACH)
		daemon.Process.Kill()
		daemon.Wait()
	})
	bin := filepath.Join(mnt, "peer")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var fs unix.Statfs_t
		if unix.Statfs(bin, &fs) == nil && fs.Type == unix.FUSE_SUPER_MAGIC {
			break
		}
		if time.Now().After(deadline) {
			t.Skip("bindfs did not mount within 10s")
		}
	}
	const timeout = 500 * time.Millisecond
	h := listenConfig(t, ListenConfig{Mode: 0666, VerifyTimeout: timeout}, ProgramDigest(fileSHA256(t, bin)))
	// Runs before the listener's cleanup: Close waits for the stalled worker.
	t.Cleanup(func() { daemon.Process.Signal(syscall.SIGCONT) })
	stalled := startClient(t, bin, h.path, "announce", nil)
	// Connected, the peer waits for the answer; the listener has not
	// looked at it yet (it starts with the first Accept).
	if got := stalled.line(t); got != "connected" {
		t.Fatalf("FUSE peer: %q", got)
	}
	if err := daemon.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	h.start()
	begin := time.Now()
	allowed := startClient(t, filepath.Join(src, "peer"), h.path, "talk", nil)
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
	daemon.Process.Signal(syscall.SIGCONT)
	if got := stalled.line(t); got != "closed" {
		t.Errorf("FUSE peer read %q, want its connection closed", got)
	}
	rej := h.mustReject(t)
	if rej.Peer.PID != stalled.cmd.Process.Pid || !errors.Is(rej, ErrVerifyTimeout) {
		t.Fatalf("rejection %v, want ErrVerifyTimeout for pid %d", rej, stalled.cmd.Process.Pid)
	}
	t.Log(rej)
}
