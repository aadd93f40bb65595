package secnet

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDigestMissesDoNotDelayOthers replays the head-of-line attack on
// ProgramDigest with real processes: a peer of uid 1 runs a copy of the
// test binary made as large as ProgramDigest hashes (maxDigestSize, a
// sparse tail), queues several connections, and the file's times change
// all along, so that every verification misses the digest cache and
// hashes the whole file. Meanwhile a peer whose uid rule settles
// AnyOf(UID(allowed), ProgramDigest(d)) connects: it must be accepted
// without a hash, before the hashing connections are all decided, and
// within a generous bound.
//
// The "serial" case runs the same attack against a listener that
// verifies in Accept (neverPipeline): the allowed peer's verdict comes
// only after every queued connection's hash, which is what the other
// cases would see from a serial Accept. Its check is of order, not time
// (the kernel's backlog is first in, first out), so it is deterministic;
// it hashes the file several times over and is skipped with -short.
func TestDigestMissesDoNotDelayOthers(t *testing.T) {
	requireLinux(t)
	requireRoot(t)
	for _, tt := range []struct {
		name    string
		allowed uint32 // the uid of the allowed peer, and of the rule
		serial  bool
		conns   int // connections of the hashing peer
	}{
		{"root", 0, false, 12},
		{"uid 2", 2, false, 12},
		{"serial", 0, true, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.serial && testing.Short() {
				t.Skip("hashes 1 GiB several times over")
			}
			digestHOL(t, tt.allowed, tt.serial, tt.conns)
		})
	}
}

// digestHOL runs one case of TestDigestMissesDoNotDelayOthers.
func digestHOL(t *testing.T, allowed uint32, serial bool, conns int) {
	// How long the allowed peer may take, from its start to its verdict.
	// One hash of the file takes 0.3 s at the very least (SHA-256 at
	// 3 GB/s); a serial Accept would verify it after all conns of them
	// (measured with neverPipeline on the 2-core machines: 9.5 s behind 8).
	const bound = 2 * time.Second
	const hogUID = 1
	dir := sockDir(t)
	big := filepath.Join(dir, "big")
	if err := copyExecutable(big); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, maxDigestSize); err != nil {
		t.Fatal(err)
	}
	// Change the file's times until the test ends (this cleanup runs
	// before sockDir's): no digest of it is ever reused.
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				now := time.Now()
				os.Chtimes(big, now, now)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-stopped })

	rule := AnyOf(UID(int(allowed)), ProgramDigest(strings.Repeat("0", 64)))
	// Two workers for uid 1, whatever the number of processors: its
	// connections are hashed two at a time, and the last of them is
	// decided conns/2 hashes after the first (at least 1.8 s).
	lc := ListenConfig{Mode: 0666, Workers: 4, WorkersPerUID: 2, neverPipeline: serial}
	h := listenConfig(t, lc, rule)
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: hogUID, Gid: hogUID}}
	hog := startPeer(t, big, "holdmany", cred, "SECNET_TEST_SOCK="+h.path, "SECNET_TEST_N="+itoa(conns))
	if got := hog.line(t); got != "connected" {
		t.Fatalf("hashing peer: %q", got)
	}
	h.start()
	waitHashing(t, big)

	var attr *syscall.SysProcAttr
	if allowed != 0 {
		attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: allowed, Gid: allowed}}
	}
	begin := time.Now()
	cl := startClient(t, peerBinary(t), h.path, "talk", attr)
	var c *SecureConn
	before := 0 // verdicts on the hashing peer's connections before the allowed peer's
	for c == nil {
		select {
		case c = <-h.accepted:
		case rej := <-h.rejected:
			if rej.Peer.UID != hogUID {
				t.Fatalf("rejected, want accepted: %v", rej)
			}
			before++
		case <-time.After(30 * time.Second):
			t.Fatalf("no verdict on the allowed peer within 30s (%d of %d hashing connections decided)", before, conns)
		}
	}
	took := time.Since(begin)
	t.Logf("uid %d accepted %v after it started, after %d of %d connections whose verification hashes %d MiB", allowed, took, before, conns, maxDigestSize>>20)
	if p := c.Peer(); p.PID != cl.cmd.Process.Pid || p.UID != int(allowed) {
		t.Fatalf("accepted pid %d uid %d, want pid %d uid %d", p.PID, p.UID, cl.cmd.Process.Pid, allowed)
	}
	if c.id.peer.known&attrDigest != 0 || c.id.peer.ProgramSHA256 != "" {
		t.Errorf("uid %d passed its uid rule, yet its executable was hashed (%q)", allowed, c.id.peer.ProgramSHA256)
	}
	if got := cl.line(t); got != "pong" {
		t.Errorf("allowed peer read %q, want pong", got)
	}
	if serial {
		// What a serial Accept does: the allowed peer waits for every
		// hash queued before it.
		if before != conns {
			t.Errorf("a serial listener decided the allowed peer after %d of the %d connections queued before it", before, conns)
		}
		return
	}
	if before == conns {
		t.Errorf("the allowed peer was decided only after all %d hashing connections, as a serial Accept would (%v)", conns, took)
	}
	if took > bound {
		t.Errorf("the allowed peer was accepted after %v, more than %v", took, bound)
	}
}

// waitHashing waits until the listener (this process) has the file at
// path open: a verification is hashing it.
func waitHashing(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, fd := range fds {
			if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); l == path {
				return
			}
		}
	}
	t.Fatalf("the listener did not open %s within 20s", path)
}
