package secnet

// Peers that try to cheat or to wear the listener down, as real processes:
// a storm of peers that exit as soon as they have connected, and peers
// that connect and never speak. The Linux-only cases (exec, descriptor
// passing, mount namespaces, a listener out of file descriptors) are in
// adversarial_linux_test.go.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

func init() {
	childRoles["burst"] = runBurst
}

// requireLinux skips tests that need peers to be verified: on other
// systems every peer is rejected.
func requireLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("peer verification is implemented for Linux, not %s", runtime.GOOS)
	}
}

var (
	otherOnce sync.Once
	otherPath string
	otherErr  error
)

// otherBinary returns a second copy of the test binary: the same code in
// another file, which a Program rule naming peerBinary does not allow.
func otherBinary(t testing.TB) string {
	t.Helper()
	peerBinary(t)
	otherOnce.Do(func() {
		otherPath = filepath.Join(binDir, "other")
		otherErr = copyExecutable(otherPath)
	})
	if otherErr != nil {
		t.Fatal(otherErr)
	}
	return otherPath
}

// runBurst connects SECNET_TEST_N times to SECNET_TEST_SOCK, prints
// "connected" and exits at once, leaving its connections in the
// listener's queue with no process behind them.
func runBurst() int {
	n, _ := strconv.Atoi(os.Getenv("SECNET_TEST_N"))
	for range n {
		if _, err := net.Dial("unix", os.Getenv("SECNET_TEST_SOCK")); err != nil {
			fmt.Println("dial:", err)
			return 2
		}
	}
	fmt.Println("connected")
	return 0
}

// stormResult counts the verdicts of a storm.
type stormResult struct {
	accepted map[int]int // pid -> connections accepted
	rejected map[int]int // pid -> connections rejected
}

// storm starts bursts peers that each connect perBurst times and exit,
// and allowed peers that connect, say "ping" and wait for "pong", all at
// once, from bin, against h (whose rules allow bin). With queued, the
// listener starts accepting only when every burst peer has exited.
// storm checks every verdict and returns the counts.
func storm(t *testing.T, h *harness, bin string, bursts, perBurst, allowed int, queued bool) stormResult {
	t.Helper()
	if !queued {
		h.start()
	}
	burstPIDs := map[int]bool{}
	var burstProcs []*peerProc
	for range bursts {
		p := startPeer(t, bin, "burst", nil, "SECNET_TEST_SOCK="+h.path, "SECNET_TEST_N="+itoa(perBurst))
		burstPIDs[p.cmd.Process.Pid] = true
		burstProcs = append(burstProcs, p)
	}
	allowedPIDs := map[int]*peerProc{}
	for range allowed {
		p := startClient(t, bin, h.path, "talk", nil)
		allowedPIDs[p.cmd.Process.Pid] = p
	}
	for _, p := range burstProcs {
		if got := p.line(t); got != "connected" {
			t.Fatalf("burst peer: %q", got)
		}
		p.wait(t)
	}
	res := stormResult{accepted: map[int]int{}, rejected: map[int]int{}}
	for range bursts*perBurst + allowed {
		c, rej := h.next(t)
		if c != nil {
			p := c.Peer()
			if allowedPIDs[p.PID] == nil && !burstPIDs[p.PID] {
				t.Errorf("accepted a connection from pid %d, which is none of the peers", p.PID)
			}
			if queued && burstPIDs[p.PID] {
				t.Errorf("accepted a connection of pid %d, which had exited before Accept: %v", p.PID, &p)
			}
			res.accepted[p.PID]++
			continue
		}
		if !burstPIDs[rej.Peer.PID] {
			t.Errorf("rejected a peer that must pass: %v", rej)
		}
		if !errors.Is(rej, ErrPeerExited) {
			// Also a peer that dies while it is verified: the kernel drops
			// its memory map (/proc/<pid>/exe reads ENOENT) a little before
			// its pidfd reports the exit, and secnet reports that as exited.
			t.Errorf("a peer that exited was rejected for another reason than ErrPeerExited: %v", rej)
		}
		res.rejected[rej.Peer.PID]++
	}
	for pid, p := range allowedPIDs {
		if res.accepted[pid] != 1 {
			t.Errorf("allowed peer %d: %d connections accepted, want 1", pid, res.accepted[pid])
		}
		if got := p.line(t); got != "pong" {
			t.Errorf("allowed peer %d was not served: it read %q", pid, got)
		}
	}
	return res
}

// TestStormOfExitingPeers mixes peers that connect and exit at once with
// peers that stay and talk. The Program rule needs the peer's process:
// connections whose process is gone are rejected with ErrPeerExited, never
// delivered; every allowed peer is served; nothing leaks.
func TestStormOfExitingPeers(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	rules := []Rule{UID(os.Getuid()), Program(bin)}

	// Warm up lazily created runtime state before counting.
	t.Run("warmup", func(t *testing.T) { storm(t, listen(t, rules...), bin, 1, 2, 1, true) })
	before := markLeaks(t)

	t.Run("queued", func(t *testing.T) {
		// Every burst peer has exited before the listener looks at its
		// connections: all of them must be rejected, none delivered.
		const bursts, perBurst = 6, 20
		res := storm(t, listen(t, rules...), bin, bursts, perBurst, 6, true)
		n := 0
		for _, c := range res.rejected {
			n += c
		}
		if n != bursts*perBurst {
			t.Errorf("%d connections of exited peers rejected, want %d", n, bursts*perBurst)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		// Peers exit while the listener verifies them: a connection whose
		// peer was still running the allowed program may be delivered; one
		// whose peer died under the listener must be rejected as exited.
		res := storm(t, listen(t, rules...), bin, 6, 20, 6, false)
		t.Logf("burst connections: %d accepted while their peer ran, %d rejected as exited",
			sum(res.accepted)-6, sum(res.rejected))
	})

	before.check(t, "during the storms")
}

func sum(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestSilentPeersDoNotBlockAccept queues peers that connect and never send
// a byte ahead of peers that talk: Accept reads nothing from a peer, so
// every one of them is accepted and the talkers are served.
func TestSilentPeersDoNotBlockAccept(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	other := otherBinary(t)
	h := listen(t, UID(os.Getuid()), Program(bin))
	silent := map[int]bool{}
	for _, b := range []string{bin, bin, other, other} { // allowed and rejected silent peers
		p := startClient(t, b, h.path, "hold", nil)
		if got := p.line(t); got != "connected" {
			t.Fatalf("silent peer: %q", got)
		}
		silent[p.cmd.Process.Pid] = true
	}
	var talkers []*peerProc
	for range 3 {
		talkers = append(talkers, startClient(t, bin, h.path, "talk", nil))
	}
	accepted, rejected := 0, 0
	for range 4 + 3 {
		_, rej := h.next(t)
		if rej != nil {
			if !silent[rej.Peer.PID] || rej.Peer.Program != other {
				t.Errorf("unexpected rejection: %v", rej)
			}
			rejected++
			continue
		}
		accepted++
	}
	if accepted != 5 || rejected != 2 {
		t.Errorf("%d accepted, %d rejected; want 5 and 2", accepted, rejected)
	}
	for _, p := range talkers {
		if got := p.line(t); got != "pong" {
			t.Errorf("talker %d read %q, want pong", p.cmd.Process.Pid, got)
		}
	}
}
