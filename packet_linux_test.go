package secnet

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	childRoles["dgram"] = runDgram
}

// runDgram sends datagrams to SECNET_TEST_SOCK from an unbound socket.
// Modes (SECNET_TEST_MODE):
//
//	send     send "hello", print "sent", wait for stdin to close
//	exit     send "hello" and exit at once
//	exec     send "hello", print "sent", exec /bin/cat (which waits on stdin)
//	sendexec send "hello", print "sent", read a line, then exec
//	         SECNET_TEST_EXEC as a sender in mode send
//	realuid  set the real uid to 1234 (keeping effective uid 0), then send
//	rights   send "hello" with SECNET_TEST_FDS copies of fd 3 (SCM_RIGHTS), exit
//	count    send SECNET_TEST_COUNT datagrams, each with a copy of fd 0, exit
//	         (with SECNET_TEST_HOLD set: print "sent", wait for stdin to close)
//	flood    send 64-byte datagrams until sending fails
//	hold-none  send nothing: print "running", wait for stdin to close
func runDgram() int {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: os.Getenv("SECNET_TEST_SOCK"), Net: "unixgram"})
	if err != nil && os.Getenv("SECNET_TEST_MODE") != "hold-none" {
		fmt.Println("dial:", err)
		return 2
	}
	if os.Getenv("SECNET_TEST_MODE") == "hold-none" {
		// Sends nothing: a running process for the test.
		fmt.Println("running")
		io.Copy(io.Discard, os.Stdin)
		return 0
	}
	hello := []byte("hello")
	fail := func(what string, err error) int {
		fmt.Println(what+":", err)
		return 2
	}
	switch mode := os.Getenv("SECNET_TEST_MODE"); mode {
	case "send", "exit", "exec", "realuid", "sendexec":
		if mode == "realuid" {
			if err := syscall.Setresuid(1234, 0, 0); err != nil {
				return fail("setresuid", err)
			}
		}
		if _, err := c.Write(hello); err != nil {
			return fail("send", err)
		}
		if mode == "exit" {
			return 0
		}
		fmt.Println("sent")
		switch mode {
		case "exec":
			err := syscall.Exec("/bin/cat", []string{"cat"}, os.Environ())
			return fail("exec", err)
		case "sendexec":
			bufio.NewReader(os.Stdin).ReadString('\n')
			target := os.Getenv("SECNET_TEST_EXEC")
			env := []string{"SECNET_TEST_MODE=send"} // execve keeps the first of duplicate names
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "SECNET_TEST_MODE=") {
					env = append(env, kv)
				}
			}
			err := syscall.Exec(target, []string{target}, env)
			return fail("exec", err)
		}
		io.Copy(io.Discard, os.Stdin)
	case "rights", "count":
		// A connected *net.UnixConn cannot send control data: a socket
		// of our own, blocking when the receiver's queue is full.
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail("socket", err)
		}
		to := &unix.SockaddrUnix{Name: os.Getenv("SECNET_TEST_SOCK")}
		oob, n := unix.UnixRights(0), 1
		if mode == "rights" {
			k, _ := strconv.Atoi(os.Getenv("SECNET_TEST_FDS"))
			fds := make([]int, k)
			for i := range fds {
				fds[i] = 3
			}
			oob = unix.UnixRights(fds...)
		} else {
			n, _ = strconv.Atoi(os.Getenv("SECNET_TEST_COUNT"))
		}
		for range n {
			if err := unix.Sendmsg(fd, hello, oob, to, 0); err != nil {
				return fail("send", err)
			}
		}
		if os.Getenv("SECNET_TEST_HOLD") != "" {
			fmt.Println("sent")
			io.Copy(io.Discard, os.Stdin) // alive until the test has read
		}
	case "flood":
		msg := make([]byte, 64)
		for {
			if _, err := c.Write(msg); err != nil {
				return 0
			}
		}
	default:
		return fail("mode", errors.New(mode))
	}
	return 0
}

// packetHarness is a verified datagram socket with the rejections it
// reported.
type packetHarness struct {
	pc       *PacketConn
	path     string
	rejected chan *RejectError
}

// listenDgram starts a PacketConn on a new path that every user can send
// to, with rules.
func listenDgram(t *testing.T, rules ...Rule) *packetHarness {
	t.Helper()
	return listenDgramWith(t, &ListenConfig{}, filepath.Join(sockDir(t), "d"), rules...)
}

func listenDgramWith(t *testing.T, lc *ListenConfig, path string, rules ...Rule) *packetHarness {
	t.Helper()
	h := &packetHarness{path: path, rejected: make(chan *RejectError, 64)}
	lc.Rejected = func(e *RejectError) {
		select {
		case h.rejected <- e:
		default: // a test that counts sets its own function
		}
	}
	pc, err := lc.ListenPacket(context.Background(), "unixgram", path, rules...)
	if err != nil {
		t.Fatal(err)
	}
	if path[0] != '@' {
		os.Chmod(path, 0666)
	}
	h.pc = pc
	t.Cleanup(func() { pc.Close() })
	return h
}

// mustRead reads the next datagram, which must pass the rules.
func (h *packetHarness) mustRead(t *testing.T) (string, Peer) {
	t.Helper()
	buf := make([]byte, 256)
	h.pc.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, _, p, err := h.pc.ReadFromPeer(buf)
	if err != nil {
		select {
		case rej := <-h.rejected:
			t.Fatalf("datagram rejected, want accepted: %v", rej)
		default:
		}
		t.Fatalf("no datagram accepted: %v", err)
	}
	return string(buf[:n]), p
}

// mustReject reads until the next datagram is rejected; none may pass.
func (h *packetHarness) mustReject(t *testing.T) *RejectError {
	t.Helper()
	buf := make([]byte, 256)
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		h.pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, _, p, err := h.pc.ReadFromPeer(buf)
		if err == nil {
			t.Fatalf("datagram %q from %v accepted, want rejected", buf[:n], &p)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
		select {
		case rej := <-h.rejected:
			return rej
		default:
		}
	}
	t.Fatal("no datagram was rejected within 20s")
	return nil
}

// sendDgram starts a sender of h in mode.
func sendDgram(t *testing.T, bin, path, mode string, attr *syscall.SysProcAttr, env ...string) *peerProc {
	t.Helper()
	return startPeer(t, bin, "dgram", attr, append([]string{"SECNET_TEST_SOCK=" + path, "SECNET_TEST_MODE=" + mode}, env...)...)
}

// dgramCmd is a sender of path in mode, run to its end by the caller.
func dgramCmd(bin, path, mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append([]string{"SECNET_TEST_ROLE=dgram", "SECNET_TEST_SOCK=" + path,
		"SECNET_TEST_MODE=" + mode, "GORACE=atexit_sleep_ms=0 " + os.Getenv("GORACE")}, env...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd
}

func asUser(uid, gid int, groups ...uint32) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
}

func TestPacketCredentialRules(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)

	t.Run("uid", func(t *testing.T) {
		h := listenDgram(t, UID(1234))
		p := sendDgram(t, bin, h.path, "send", asUser(1234, 1235))
		p.line(t)
		msg, peer := h.mustRead(t)
		if msg != "hello" || peer.UID != 1234 || peer.GID != 1235 || peer.PID != p.cmd.Process.Pid {
			t.Errorf("got %q from %v, want hello from pid %d uid 1234 gid 1235", msg, &peer, p.cmd.Process.Pid)
		}
		sendDgram(t, bin, h.path, "send", asUser(1236, 1235)).line(t)
		rej := h.mustReject(t)
		if rej.Peer.UID != 1236 || !strings.Contains(rej.Error(), "uid: peer uid 1236 is not 1234") {
			t.Errorf("rejection: %v", rej)
		}
	})
	t.Run("uid decides before the process is read", func(t *testing.T) {
		// The sender has exited: reading its program would fail with
		// ErrPeerExited. A uid that does not match settles it first.
		h := listenDgram(t, UID(1234), Program(bin))
		sendDgram(t, bin, h.path, "exit", asUser(1236, 1235)).wait(t)
		rej := h.mustReject(t)
		if len(rej.Failures) != 1 || rej.Failures[0].Rule != "uid" || len(rej.NotEvaluated) != 1 ||
			errors.Is(rej, ErrPeerExited) || rej.Peer.known&attrProgram != 0 {
			t.Errorf("rejection %v (not evaluated %v), want the uid rule alone", rej, rej.NotEvaluated)
		}
	})
	t.Run("gid", func(t *testing.T) {
		h := listenDgram(t, GID(1235))
		sendDgram(t, bin, h.path, "send", asUser(1234, 1235)).line(t)
		h.mustRead(t)
		sendDgram(t, bin, h.path, "send", asUser(1234, 1236)).line(t)
		h.mustReject(t)
	})
	t.Run("ingroup reads /proc through the pidfd", func(t *testing.T) {
		h := listenDgram(t, InGroup(4242))
		sendDgram(t, bin, h.path, "send", asUser(1234, 1235, 4242, 4243)).line(t)
		_, peer := h.mustRead(t)
		if !sameInts(peer.Groups, []int{4242, 4243}) {
			t.Errorf("groups %v, want [4242 4243]", peer.Groups)
		}
		sendDgram(t, bin, h.path, "send", asUser(1234, 1235, 4243)).line(t)
		rej := h.mustReject(t)
		if !sameInts(rej.Peer.Groups, []int{4243}) {
			t.Errorf("rejected groups %v, want [4243]", rej.Peer.Groups)
		}
	})
	t.Run("real ids, not effective", func(t *testing.T) {
		// SCM_CREDENTIALS carries the real uid: a process with real uid
		// 1234 and effective uid 0 sends as 1234.
		h := listenDgram(t, UID(1234))
		sendDgram(t, bin, h.path, "realuid", nil).line(t)
		if _, peer := h.mustRead(t); peer.UID != 1234 {
			t.Errorf("uid %d, want the real uid 1234", peer.UID)
		}
		h = listenDgram(t, UID(0))
		sendDgram(t, bin, h.path, "realuid", nil).line(t)
		h.mustReject(t)
	})
}

func TestPacketProcessRules(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	t.Run("program", func(t *testing.T) {
		h := listenDgram(t, Program(bin))
		p := sendDgram(t, bin, h.path, "send", nil)
		p.line(t)
		if _, peer := h.mustRead(t); peer.Program != bin || peer.PID != p.cmd.Process.Pid {
			t.Errorf("peer %v, want pid %d running %s", &peer, p.cmd.Process.Pid, bin)
		}
		other := otherBinary(t)
		sendDgram(t, other, h.path, "send", nil).line(t)
		if rej := h.mustReject(t); rej.Peer.Program != other {
			t.Errorf("rejected %v, want the copy %s", &rej.Peer, other)
		}
	})
	t.Run("program digest", func(t *testing.T) {
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		h := listenDgram(t, Program(bin), ProgramDigest("sha256:"+hex.EncodeToString(sum[:])))
		sendDgram(t, bin, h.path, "send", nil).line(t)
		if _, peer := h.mustRead(t); peer.ProgramSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("digest %q, want %x", peer.ProgramSHA256, sum)
		}
		sendDgram(t, otherBinary(t), h.path, "send", nil).line(t)
		h.mustReject(t)

		// VerifyTimeout bounds the hashing.
		lc := &ListenConfig{VerifyTimeout: time.Nanosecond}
		h = listenDgramWith(t, lc, filepath.Join(sockDir(t), "d"), ProgramDigest("sha256:"+hex.EncodeToString(sum[:])))
		sendDgram(t, bin, h.path, "send", nil).line(t)
		if rej := h.mustReject(t); !errors.Is(rej, ErrVerifyTimeout) {
			t.Errorf("rejection %v, want ErrVerifyTimeout", rej)
		}
	})
	t.Run("fallback without SO_PASSPIDFD", func(t *testing.T) {
		h := listenDgramWithOpts(t, &ListenConfig{}, readOptions{noPeerPidfd: true}, Program(bin))
		sendDgram(t, bin, h.path, "send", nil).line(t)
		if _, peer := h.mustRead(t); peer.Program != bin {
			t.Errorf("peer %v, want %s", &peer, bin)
		}
		sendDgram(t, otherBinary(t), h.path, "send", nil).line(t)
		h.mustReject(t)
	})
	t.Run("namespaces and cgroup", func(t *testing.T) {
		own, err := OwnNamespaces()
		if err != nil {
			t.Skip(err)
		}
		h := listenDgram(t, SameNamespaces(), Cgroup("*"))
		sendDgram(t, bin, h.path, "send", nil).line(t)
		_, peer := h.mustRead(t)
		if peer.Namespaces != own || peer.Cgroup == "" {
			t.Errorf("peer namespaces %v cgroup %q, want %v and a cgroup", peer.Namespaces, peer.Cgroup, own)
		}
	})
	t.Run("label", func(t *testing.T) {
		// No security module labels sockets on these machines: no
		// SCM_SECURITY, so the label is empty.
		h := listenDgram(t, Label(""))
		sendDgram(t, bin, h.path, "send", nil).line(t)
		if _, peer := h.mustRead(t); peer.Label != "" {
			t.Skipf("a security module labels sockets here (%q)", peer.Label)
		}
		h = listenDgram(t, Label("system_u:*"))
		sendDgram(t, bin, h.path, "send", nil).line(t)
		if rej := h.mustReject(t); !strings.Contains(rej.Error(), "no security label") {
			t.Errorf("rejection: %v", rej)
		}
	})
}

// listenDgramWithOpts is listenDgramWith for a socket whose reader uses
// opts, set before bind as ListenPacket sets them.
func listenDgramWithOpts(t *testing.T, lc *ListenConfig, opts readOptions, rules ...Rule) *packetHarness {
	t.Helper()
	v := newVerifier(rules)
	v.opts = opts
	path := filepath.Join(sockDir(t), "d")
	h := &packetHarness{path: path, rejected: make(chan *RejectError, 64)}
	lc.Rejected = func(e *RejectError) { h.rejected <- e }
	pc, err := listenPacket(context.Background(), lc, "unixgram", path, v)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0666)
	h.pc = pc
	t.Cleanup(func() { pc.Close() })
	return h
}

// TestPacketSenderExited: the ids were attached when the datagram was
// sent, so a uid rule passes a sender that is gone; a rule that needs
// its process fails with ErrPeerExited.
func TestPacketSenderExited(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	h := listenDgram(t, UID(os.Getuid()))
	p := sendDgram(t, bin, h.path, "exit", nil)
	p.wait(t) // exited and reaped
	_, peer := h.mustRead(t)
	if peer.PID != p.cmd.Process.Pid || peer.UID != os.Getuid() {
		t.Errorf("peer %v, want pid %d uid %d", &peer, p.cmd.Process.Pid, os.Getuid())
	}
	// ReadFromPeer delivers it (the rule passed), and says what it could
	// not read.
	if err := peer.Err(); !errors.Is(err, ErrPeerExited) || peer.Program != "" {
		t.Errorf("peer.Err() = %v, program %q; want ErrPeerExited and no program", err, peer.Program)
	}

	for _, r := range []Rule{Program(bin), InGroup(0), OnHost(), Cgroup("*")} {
		t.Run(r.Name(), func(t *testing.T) {
			h := listenDgram(t, r)
			sendDgram(t, bin, h.path, "exit", nil).wait(t)
			if rej := h.mustReject(t); !errors.Is(rej, ErrPeerExited) {
				t.Errorf("rejection %v, want ErrPeerExited", rej)
			}
		})
		t.Run(r.Name()+" without SO_PASSPIDFD", func(t *testing.T) {
			h := listenDgramWithOpts(t, &ListenConfig{}, readOptions{noPeerPidfd: true}, r)
			sendDgram(t, bin, h.path, "exit", nil).wait(t)
			if rej := h.mustReject(t); !errors.Is(rej, ErrPeerExited) {
				t.Errorf("rejection %v, want ErrPeerExited", rej)
			}
		})
	}
}

// TestPacketSenderExecs: the process is read when the datagram is read. A
// sender that calls execve after sending is seen running its new program.
func TestPacketSenderExecs(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	cat, err := filepath.EvalSymlinks("/bin/cat")
	if err != nil {
		t.Skip("no /bin/cat:", err)
	}
	h := listenDgram(t, Program(bin))
	p := sendDgram(t, bin, h.path, "exec", nil)
	p.line(t)
	waitExe(t, p.cmd.Process.Pid, cat)
	rej := h.mustReject(t)
	if rej.Peer.Program != cat || rej.Peer.PID != p.cmd.Process.Pid {
		t.Errorf("rejected %v, want pid %d running %s", &rej.Peer, p.cmd.Process.Pid, cat)
	}

	h = listenDgram(t, Program(cat))
	p = sendDgram(t, bin, h.path, "exec", nil)
	p.line(t)
	waitExe(t, p.cmd.Process.Pid, cat)
	if _, peer := h.mustRead(t); peer.Program != cat {
		t.Errorf("peer %v, want %s (the program after execve)", &peer, cat)
	}
}

// TestPacketSenderExecsBetweenDatagrams: the program read for a sender
// is remembered between its datagrams, but an execve is still seen.
func TestPacketSenderExecsBetweenDatagrams(t *testing.T) {
	requireLinux(t)
	bin, other := peerBinary(t), otherBinary(t)
	h := listenDgram(t, Program(bin))
	p := sendDgram(t, bin, h.path, "sendexec", nil, "SECNET_TEST_EXEC="+other)
	p.line(t)
	if _, peer := h.mustRead(t); peer.Program != bin {
		t.Fatalf("peer %v, want %s", &peer, bin)
	}
	io.WriteString(p.stdin, "exec\n")
	if got := p.line(t); got != "sent" {
		t.Fatalf("sender after exec: %q", got)
	}
	rej := h.mustReject(t)
	if rej.Peer.Program != other || rej.Peer.PID != p.cmd.Process.Pid {
		t.Errorf("rejected %v, want pid %d running %s", &rej.Peer, p.cmd.Process.Pid, other)
	}
}

// waitExe waits until the process pid runs exe.
func waitExe(t *testing.T, pid int, exe string) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if got, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); got == exe {
			return
		}
	}
	t.Fatalf("process %d does not run %s", pid, exe)
}

// TestPacketUserNamespace: a sender in its own user namespace, as root
// there, sends with the host uid its namespace maps root to.
func TestPacketUserNamespace(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	// The sender sets its uid to 0 inside the namespace (until it does,
	// it keeps the host's ids): that is host uid 1234.
	attr := &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1234, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 1234, Size: 1}},
	}
	h := listenDgram(t, UID(1234))
	sendDgram(t, bin, h.path, "send", attr).line(t)
	if _, peer := h.mustRead(t); peer.UID != 1234 || peer.GID != 1234 {
		t.Errorf("peer %v, want uid and gid 1234", &peer)
	}
	h = listenDgram(t, SameNamespaces(UserNamespace))
	sendDgram(t, bin, h.path, "send", attr).line(t)
	if rej := h.mustReject(t); !strings.Contains(rej.Error(), "user") {
		t.Errorf("rejection: %v", rej)
	}
}

// TestPacketRightsClosed: descriptors passed with SCM_RIGHTS are closed,
// in accepted and rejected datagrams: the write end of a pipe passed by
// the sender is gone once the datagram is read.
func TestPacketRightsClosed(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	for _, tc := range []struct {
		name   string
		rule   Rule
		accept bool
	}{{"accepted", Anyone(), true}, {"rejected", UID(os.Getuid() + 1), false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := listenDgram(t, tc.rule)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cmd := dgramCmd(bin, h.path, "rights", "SECNET_TEST_FDS=3")
			cmd.ExtraFiles = []*os.File{w}
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			before := openFDs(t)
			if tc.accept {
				h.mustRead(t)
			} else {
				h.mustReject(t)
			}
			for fd, target := range openFDs(t) {
				if before[fd] != target {
					t.Errorf("fd %s (%s) received with the datagram is open", fd, target)
				}
			}
			// Every write end is closed: the pipe reads EOF.
			r.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := r.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("pipe read: %v, want EOF (a passed write end is still open)", err)
			}
		})
	}
}

// TestPacketTruncatedControl: a datagram whose control data does not fit
// is rejected, and the descriptors that did fit are closed.
func TestPacketTruncatedControl(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	h := listenDgram(t, Anyone())
	h.pc.sys.oobSize = unix.CmsgSpace(unix.SizeofUcred) + unix.CmsgSpace(2*4)
	before := openFDs(t)
	cmd := dgramCmd(bin, h.path, "rights", "SECNET_TEST_FDS=10")
	cmd.ExtraFiles = []*os.File{os.Stdin}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	rej := h.mustReject(t)
	if !strings.Contains(rej.Error(), "MSG_CTRUNC") {
		t.Errorf("rejection %v, want MSG_CTRUNC", rej)
	}
	for fd, target := range openFDs(t) {
		if before[fd] != target {
			t.Errorf("fd %s (%s) received with the datagram is open", fd, target)
		}
	}
}

// TestPacketRejectionsLeakNothing sends 10,000 datagrams that fail a rule
// read through the sender's pidfd, each with a descriptor: every one is
// reported, and no descriptor or goroutine is left.
func TestPacketRejectionsLeakNothing(t *testing.T) {
	requireLinux(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := peerBinary(t) // a copy: not the program the rule allows
	path := filepath.Join(sockDir(t), "d")
	var rejections atomic.Int64
	lc := &ListenConfig{}
	pc, err := lc.ListenPacket(context.Background(), "unixgram", path, Program(self))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetRejected(func(e *RejectError) {
		if rejections.Add(1) == 1 {
			t.Logf("first rejection: %v", e)
		}
	})
	fds, goroutines := openFDs(t), runtime.NumGoroutine()

	const n = 10000
	type result struct {
		msg string
		err error
	}
	done := make(chan result, 1)
	go func() {
		buf := make([]byte, 64)
		pc.SetReadDeadline(time.Now().Add(2 * time.Minute))
		k, _, err := pc.ReadFrom(buf)
		done <- result{string(buf[:k]), err}
	}()
	if err := dgramCmd(bin, path, "count", "SECNET_TEST_COUNT="+strconv.Itoa(n)).Run(); err != nil {
		t.Fatal(err)
	}
	// The test binary itself passes: its datagram ends the read.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("end")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if r := <-done; r.err != nil || r.msg != "end" {
		t.Fatalf("read %q, %v; want the test's own datagram", r.msg, r.err)
	}
	if got := rejections.Load(); got != n {
		t.Errorf("%d rejections reported, want %d", got, n)
	}
	for fd, target := range openFDs(t) {
		if fds[fd] != target {
			t.Errorf("fd %s (%s) opened during %d rejections is still open", fd, target, n)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		t.Errorf("goroutines: %d before, %d after %d rejections", goroutines, got, n)
	}
}

// TestPacketSocketFile covers the socket file: abstract names, a stale
// file replaced, a live socket and other files left in place, Close
// removing the file, invalid rules and networks.
func TestPacketSocketFile(t *testing.T) {
	requireLinux(t)
	dir := sockDir(t)
	t.Run("abstract", func(t *testing.T) {
		name := fmt.Sprintf("@secnet-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		h := listenDgramWith(t, &ListenConfig{}, name, SameUser())
		if got := h.pc.LocalAddr().String(); got != name {
			t.Errorf("LocalAddr %q, want %q", got, name)
		}
		c, err := net.Dial("unixgram", name)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hi"))
		if msg, _ := h.mustRead(t); msg != "hi" {
			t.Errorf("read %q", msg)
		}
		lc := &ListenConfig{Mode: 0600}
		if _, err := lc.ListenPacket(context.Background(), "unixgram", "@x", Anyone()); err == nil {
			t.Error("Mode on an abstract socket: no error")
		}
	})
	t.Run("stale file replaced, live socket kept", func(t *testing.T) {
		path := filepath.Join(dir, "stale")
		old, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ListenPacket("unixgram", path, Anyone()); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("listening over a live socket: %v, want EADDRINUSE", err)
		}
		old.Close() // leaves the file: nothing is bound to it any more
		pc, err := ListenPacket("unixgram", path, Anyone())
		if err != nil {
			t.Fatalf("replacing a stale socket file: %v", err)
		}
		pc.Close()
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Close: %v, want the file removed", err)
		}
	})
	t.Run("other files kept", func(t *testing.T) {
		path := filepath.Join(dir, "file")
		os.WriteFile(path, []byte("x"), 0600)
		if _, err := ListenPacket("unixgram", path, Anyone()); err == nil {
			t.Error("listening over a regular file: no error")
		}
		if b, _ := os.ReadFile(path); string(b) != "x" {
			t.Error("the regular file was changed")
		}
	})
	t.Run("mode and owner", func(t *testing.T) {
		requireRoot(t)
		path := filepath.Join(dir, "m")
		lc := &ListenConfig{Mode: 0620, Owner: "1234", Group: "1235"}
		pc, err := lc.ListenPacket(context.Background(), "unixgram", path, Anyone())
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != 0o620 || st.Uid != 1234 || st.Gid != 1235 {
			t.Errorf("socket file mode %#o owner %d:%d, want 0620 1234:1235", st.Mode&0o7777, st.Uid, st.Gid)
		}
		// Sending needs write permission: the group may, others may not.
		bin := peerBinary(t)
		send := func(uid, gid int) (string, error) {
			cmd := dgramCmd(bin, path, "exit")
			cmd.SysProcAttr = asUser(uid, gid)
			cmd.Stdout = nil
			out, err := cmd.Output()
			return string(out), err
		}
		if out, err := send(1236, 1236); err == nil || !strings.Contains(out, "permission denied") {
			t.Errorf("another user sent to a 0620 socket: %v %s", err, out)
		}
		if out, err := send(1236, 1235); err != nil {
			t.Errorf("a member of the group: %v %s", err, out)
		}
		if out, err := send(1234, 1234); err != nil {
			t.Errorf("the owner: %v %s", err, out)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := ListenPacket("unix", filepath.Join(dir, "u"), Anyone()); err == nil {
			t.Error(`network "unix": no error`)
		}
		if _, err := ListenPacket("unixgram", filepath.Join(dir, "n")); err == nil {
			t.Error("no rules: no error")
		}
		if _, err := ListenPacket("unixgram", filepath.Join(dir, "n"), UID()); err == nil {
			t.Error("invalid rule: no error")
		}
		// A handshake needs a connection: refused, never skipped.
		_, err := ListenPacket("unixgram", filepath.Join(dir, "n"), Anyone(), SharedSecret([]byte("0123456789abcdef0123")))
		if err == nil || !strings.Contains(err.Error(), "datagram socket") {
			t.Errorf("a handshake rule: %v, want an error", err)
		}
	})
	t.Run("close unblocks a read", func(t *testing.T) {
		pc, err := ListenPacket("unixgram", filepath.Join(dir, "c"), Anyone())
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, _, err := pc.ReadFrom(make([]byte, 8)); done <- err }()
		time.Sleep(10 * time.Millisecond)
		pc.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after Close: %v, want net.ErrClosed", err)
		}
		if err := pc.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestPacketRealClients sends with programs that are not Go: logger from
// util-linux (syslog), python3, and systemd-notify.
func TestPacketRealClients(t *testing.T) {
	requireLinux(t)
	t.Run("logger", func(t *testing.T) {
		logger, err := exec.LookPath("logger")
		if err != nil {
			t.Skip("logger (util-linux) is not installed")
		}
		logger, _ = filepath.EvalSymlinks(logger)
		// logger sends a datagram per line of its input and stays until
		// the input ends: a Program rule sees it running.
		h := listenDgram(t, SameUser(), Program(logger))
		cmd := exec.Command(logger, "--socket", h.path, "--socket-errors=on", "-t", "sntest")
		p := startCmd(t, cmd)
		io.WriteString(p.stdin, "hello from logger\n")
		msg, peer := h.mustRead(t)
		if !strings.Contains(msg, "sntest") || !strings.Contains(msg, "hello from logger") ||
			peer.Program != logger || peer.PID != cmd.Process.Pid {
			t.Errorf("read %q from %v, want a syslog line from %s, pid %d", msg, &peer, logger, cmd.Process.Pid)
		}
		p.stdin.Close()
		p.wait(t)
	})
	t.Run("python3 with SCM_RIGHTS", func(t *testing.T) {
		py, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("python3 is not installed")
		}
		h := listenDgram(t, SameUser())
		before := openFDs(t)
		// Not the standard streams: an in-flight copy of the output pipe
		// would keep CombinedOutput waiting.
		script := `import array, os, socket, sys
fd = os.open("/dev/null", os.O_RDONLY)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendmsg([b"from python"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd, fd, fd]).tobytes())], 0, sys.argv[1])
`
		if out, err := exec.Command(py, "-c", script, h.path).CombinedOutput(); err != nil {
			t.Fatalf("python3: %v: %s", err, out)
		}
		if msg, peer := h.mustRead(t); msg != "from python" || peer.UID != os.Getuid() {
			t.Errorf("read %q from %v", msg, &peer)
		}
		for fd, target := range openFDs(t) {
			if before[fd] != target {
				t.Errorf("fd %s (%s) received from python is open", fd, target)
			}
		}
	})
	t.Run("systemd-notify", func(t *testing.T) {
		notify, err := exec.LookPath("systemd-notify")
		if err != nil {
			t.Skip("systemd-notify is not installed")
		}
		// systemd-notify sends READY=1, then BARRIER=1 with the write end
		// of a pipe, and waits until the receiver closes it: it exits
		// only because the descriptor is closed.
		h := listenDgram(t, SameUser())
		cmd := exec.Command(notify, "--ready", "STATUS=up")
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+h.path)
		out := make(chan error, 1)
		var output strings.Builder
		cmd.Stdout, cmd.Stderr = &output, &output
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { out <- cmd.Wait() }()
		msg, peer := h.mustRead(t)
		if !strings.Contains(msg, "READY=1") || peer.UID != os.Getuid() {
			t.Errorf("read %q from %v, want READY=1", msg, &peer)
		}
		t.Logf("systemd-notify sent %q as pid %d (it is pid %d)", msg, peer.PID, cmd.Process.Pid)
		if msg, _ := h.mustRead(t); msg != "BARRIER=1" {
			t.Logf("second datagram %q", msg)
		}
		select {
		case err := <-out:
			if err != nil {
				t.Errorf("systemd-notify: %v: %s", err, output.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("systemd-notify still waits on its barrier: the passed descriptor was not closed")
		}
	})
}

// BenchmarkPacketRead measures the rate at which one reader receives
// 64-byte datagrams that a sender in another process sends as fast as it
// can: a plain unixgram socket against PacketConn with each policy, in
// the same run.
func BenchmarkPacketRead(b *testing.B) {
	bin := peerBinary(b)
	for _, bc := range []struct {
		name     string
		rules    []Rule
		peer     bool // ReadFromPeer
		noPidfds bool // as before Linux 6.5
	}{
		{"plain", nil, false, false},
		{"plain+SO_PASSCRED", nil, false, false}, // the kernel's part of uid
		{"uid", []Rule{UID(os.Getuid())}, false, false},
		{"ingroup", []Rule{InGroup(os.Getgid())}, false, false},
		{"program", []Rule{Program(bin)}, false, false},
		{"program-before-6.5", []Rule{Program(bin)}, false, true},
		{"uid+program", []Rule{UID(os.Getuid()), Program(bin)}, false, false},
		{"readfrompeer", []Rule{UID(os.Getuid())}, true, false},
	} {
		b.Run("rules="+bc.name, func(b *testing.B) {
			path := filepath.Join(benchDir(b), "d")
			var read func([]byte) error
			var closer io.Closer
			if bc.rules == nil {
				passcred := strings.HasSuffix(bc.name, "SO_PASSCRED")
				lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
					if passcred {
						c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
					}
					return nil
				}}
				pc, err := lc.ListenPacket(context.Background(), "unixgram", path)
				if err != nil {
					b.Fatal(err)
				}
				c := pc.(*net.UnixConn)
				read = func(buf []byte) error { _, _, err := c.ReadFrom(buf); return err }
				if passcred {
					oob := make([]byte, 64)
					read = func(buf []byte) error { _, _, _, _, err := c.ReadMsgUnix(buf, oob); return err }
				}
				closer = c
			} else {
				v := newVerifier(bc.rules)
				v.opts.noPeerPidfd = bc.noPidfds
				pc, err := listenPacket(context.Background(), &ListenConfig{}, "unixgram", path, v)
				if err != nil {
					b.Fatal(err)
				}
				pc.SetRejected(func(e *RejectError) { b.Fatal(e) })
				read = func(buf []byte) error { _, _, err := pc.ReadFrom(buf); return err }
				if bc.peer {
					read = func(buf []byte) error { _, _, _, err := pc.ReadFromPeer(buf); return err }
				}
				closer = pc
			}
			sender := dgramCmd(bin, path, "flood")
			if err := sender.Start(); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 128)
			if err := read(buf); err != nil { // the sender runs
				b.Fatal(err)
			}
			var before, after unix.Rusage
			unix.Getrusage(unix.RUSAGE_SELF, &before)
			for b.Loop() {
				if err := read(buf); err != nil {
					b.Fatal(err)
				}
			}
			unix.Getrusage(unix.RUSAGE_SELF, &after)
			// The CPU time of the receiving process alone (the sender is
			// another process): less noisy than the rate on a busy machine.
			cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			closer.Close()
			sender.Wait()
		})
	}
}

// TestPidfdSentBy: before Linux 6.5 the sender's pid is pinned by its
// start time, which must not be after the datagram was sent.
func TestPidfdSentBy(t *testing.T) {
	requireLinux(t)
	p := sendDgram(t, peerBinary(t), filepath.Join(sockDir(t), "none"), "hold-none", nil)
	pid := p.cmd.Process.Pid
	p.line(t) // running: its start time is set
	var now unix.Timespec
	unix.ClockGettime(unix.CLOCK_REALTIME, &now)

	m := &control{sent: now, hasSent: true}
	pidfd, err := pidfdSentBy(pid, m)
	if err != nil {
		t.Fatalf("a datagram sent now by a running process: %v", err)
	}
	unix.Close(pidfd)

	start, err := procStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	sent, _ := bootTicksAt(now)
	// Sent a second before the process started: its pid was another's.
	m.sent = unix.NsecToTimespec(now.Nano() - int64(sent-start+100)*1e7)
	if _, err := pidfdSentBy(pid, m); !errors.Is(err, ErrPeerExited) || !strings.Contains(err.Error(), "started after") {
		t.Errorf("a datagram sent before its process started: %v, want ErrPeerExited", err)
	}
	if _, err := pidfdSentBy(pid, &control{}); err == nil {
		t.Error("no SCM_TIMESTAMPNS: no error")
	}
}

// TestPacketConcurrentReaders: several goroutines read one PacketConn
// (buffers and the executable cache are shared) while a sender floods it;
// every datagram is delivered once. Run with -race.
func TestPacketConcurrentReaders(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	h := listenDgram(t, UID(os.Getuid()), Program(bin))
	const n, readers = 2000, 4
	var got atomic.Int64
	done := make(chan error, readers)
	end := time.Now().Add(60 * time.Second)
	for range readers {
		go func() {
			buf := make([]byte, 64)
			for got.Load() < n && time.Now().Before(end) {
				h.pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, _, err := h.pc.ReadFrom(buf); err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						continue
					}
					done <- err
					return
				}
				got.Add(1)
			}
			done <- nil
		}()
	}
	// The sender stays until every datagram is read: one read after it
	// exited would fail the Program rule.
	sender := sendDgram(t, bin, h.path, "count", nil, "SECNET_TEST_COUNT="+strconv.Itoa(n), "SECNET_TEST_HOLD=1")
	for range readers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if g := got.Load(); g != n {
		t.Errorf("%d datagrams read, want %d", g, n)
	}
	sender.stdin.Close()
	select {
	case rej := <-h.rejected:
		t.Errorf("rejected: %v", rej)
	default:
	}
}

// TestPacketNoCredentials: a datagram without SCM_CREDENTIALS, or with
// control data the kernel truncated, fails every rule.
func TestPacketNoCredentials(t *testing.T) {
	v := newVerifier([]Rule{Anyone()})
	var s packetSys
	for _, tc := range []struct {
		name  string
		m     control
		flags int
		want  string
	}{
		{"none", control{pidfd: -1}, 0, "no SCM_CREDENTIALS"},
		{"truncated", control{pidfd: -1, hasCred: true, cred: unix.Ucred{Pid: 1}}, unix.MSG_CTRUNC, "MSG_CTRUNC"},
	} {
		var p Peer
		s.sender(&tc.m, tc.flags, attrAll, &p)
		rej := v.check(&evaluation{p: &p})
		if rej == nil || !strings.Contains(rej.Error(), tc.want) {
			t.Errorf("%s: %v, want a rejection naming %s", tc.name, rej, tc.want)
		}
	}
}

// TestParseControl: every descriptor in a datagram's control data is
// closed, whatever else the data holds: those of SCM_RIGHTS and a second
// SCM_PIDFD while parsing, the pidfd kept by close, also when the data
// turns out malformed after them.
func TestParseControl(t *testing.T) {
	requireLinux(t)
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	r, w := fds[0], fds[1]
	defer unix.Close(r)
	dup := func() int {
		fd, err := unix.FcntlInt(uintptr(w), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	cmsg := func(typ int32, data []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = unix.SOL_SOCKET, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	pidfd := func(fd int) []byte {
		return cmsg(unix.SCM_PIDFD, binary.NativeEndian.AppendUint32(nil, uint32(int32(fd))))
	}
	cred := cmsg(unix.SCM_CREDENTIALS, make([]byte, unix.SizeofUcred))

	first := dup()
	var oob []byte
	oob = append(oob, unix.UnixRights(dup(), dup())...)
	oob = append(oob, pidfd(first)...)
	oob = append(oob, pidfd(dup())...) // never more than one: closed
	oob = append(oob, cred...)
	oob = append(oob, make([]byte, unix.SizeofCmsghdr-1)...) // a short header
	m := parseControl(oob)
	if m.err == nil || !m.hasCred || m.pidfd != first {
		t.Errorf("parsed %+v, want the credentials, the first pidfd and an error", m)
	}
	m.close()

	// A header longer than the data.
	bad := pidfd(dup())
	long := cmsg(unix.SCM_RIGHTS, make([]byte, 4))
	(*unix.Cmsghdr)(unsafe.Pointer(&long[0])).SetLen(len(long) + 8)
	m = parseControl(append(bad, long...))
	if m.err == nil {
		t.Errorf("a header longer than the data parsed as %+v", m)
	}
	m.close()

	// The kernel could not make a pidfd: the sender was reaped.
	m = parseControl(pidfd(-int(unix.ESRCH)))
	if !errors.Is(m.pidfdErr, ErrPeerExited) || m.pidfd != -1 {
		t.Errorf("SCM_PIDFD of -ESRCH parsed as %+v, want ErrPeerExited", m)
	}

	unix.Close(w)
	if n, err := unix.Read(r, make([]byte, 1)); n != 0 || err != nil {
		t.Errorf("pipe read: %d, %v; want end of file (a descriptor of the control data is open)", n, err)
	}
}

// TestPacketStampedWithoutPidfd: on a kernel without SO_PASSPIDFD
// (emulated) a socket whose rules need no process stamps every datagram
// from the start, so that ReadFromPeer, which needs the process, pins the
// sender of a datagram that came before it asked: the process is read
// through pidfd_open checked against the send time.
func TestPacketStampedWithoutPidfd(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPeerPidfd=%v", fallback), func(t *testing.T) {
			v := newVerifier([]Rule{UID(os.Getuid())})
			v.opts.noPeerPidfd = fallback
			path := filepath.Join(sockDir(t), "d")
			pc, err := listenPacket(context.Background(), &ListenConfig{}, "unixgram", path, v)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			rc, err := pc.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var stamp int
			rc.Control(func(fd uintptr) { stamp, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS) })
			if err != nil || (stamp != 0) != fallback {
				t.Errorf("SO_TIMESTAMPNS %d (%v) before the first read; want it set only without SO_PASSPIDFD", stamp, err)
			}
			sender := sendDgram(t, bin, path, "send", nil)
			if got := sender.line(t); got != "sent" {
				t.Fatalf("sender: %q", got)
			}
			buf := make([]byte, 16)
			pc.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, _, p, err := pc.ReadFromPeer(buf)
			if err != nil || string(buf[:n]) != "hello" {
				t.Fatalf("ReadFromPeer: %q, %v", buf[:n], err)
			}
			if p.PID != sender.cmd.Process.Pid || p.Program != bin || p.Err() != nil {
				t.Errorf("sender pid %d program %q (%v), want %d %q", p.PID, p.Program, p.Err(), sender.cmd.Process.Pid, bin)
			}
		})
	}
}
