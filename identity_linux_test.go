package secnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func init() {
	childRoles["reexec"] = runReexec
	childRoles["pidnslistener"] = runPIDNSListener
}

// TestEarlyVerdictReadsNoProc checks that a rule the socket's credentials
// settle keeps the listener out of /proc: under AllOf(UID(0), Program(p))
// (and the same two rules given to Listen) a peer with uid 1 is rejected
// without its program being read.
func TestEarlyVerdictReadsNoProc(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	other := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}}
	for _, tc := range []struct {
		name  string
		rules []Rule
	}{
		{"allof", []Rule{AllOf(Program(bin), UID(0))}},
		{"listen rules", []Rule{Program(bin), UID(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := listen(t, tc.rules...)
			startClient(t, bin, h.path, "talk", other)
			rej := h.mustReject(t)
			if rej.Peer.known&procAttrs != 0 || rej.Peer.Program != "" {
				t.Errorf("read %v (program %q) of a peer the uid rule rejected", rej.Peer.known, rej.Peer.Program)
			}
			if !strings.Contains(rej.Error(), "not evaluated: program("+bin+")") {
				t.Errorf("rejection %q does not say that the program rule was not evaluated", rej)
			}
			// The same peer as root passes both rules: the program is read.
			startClient(t, bin, h.path, "talk", nil)
			c := h.mustAccept(t)
			if c.id.peer.known&attrProgram == 0 {
				t.Error("accepted without reading the program")
			}
		})
	}
}

// TestEarlyVerdictHashesNothing checks that AnyOf(UID(0),
// ProgramDigest(d)) accepts root without hashing its executable, and
// hashes it for another uid.
func TestEarlyVerdictHashesNothing(t *testing.T) {
	requireRoot(t)
	dir := sockDir(t)
	bin := filepath.Join(dir, "fresh") // a new file: not in the digest cache
	if err := copyExecutable(bin); err != nil {
		t.Fatal(err)
	}
	h := listen(t, AnyOf(ProgramDigest(fileSHA256(t, bin)), UID(0)))
	before := digestCache.hashes.Load()
	startClient(t, bin, h.path, "talk", nil)
	c := h.mustAccept(t)
	if got := digestCache.hashes.Load() - before; got != 0 || c.id.peer.known&(attrDigest|attrProgram) != 0 {
		t.Errorf("root passed uid(0), yet %d files were hashed and %v read", got, c.id.peer.known)
	}
	startClient(t, bin, h.path, "talk", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}})
	c = h.mustAccept(t)
	if got := digestCache.hashes.Load() - before; got != 1 || c.id.peer.ProgramSHA256 == "" {
		t.Errorf("uid 1 passed by its digest, with %d files hashed (want 1) and digest %q", got, c.id.peer.ProgramSHA256)
	}
}

// TestNotOfAllOfStaysExact checks three-valued logic under short
// circuits: Not(AllOf(a, b)) where a cannot be read (the peer's /proc
// entry is gone) and b fails on what the socket gives (the label) passes,
// because AllOf fails whatever a would say; with b passing it fails.
func TestNotOfAllOfStaysExact(t *testing.T) {
	bin := peerBinary(t)
	h := listen(t, Not(AllOf(Program(bin), Label("no-such-label"))))
	cl := startClient(t, bin, h.path, "exit", nil)
	cl.wait(t) // the peer is gone: its program is unknown
	h.mustAccept(t)

	h = listen(t, Not(AllOf(Program(bin), Label("*"))))
	cl = startClient(t, bin, h.path, "exit", nil)
	cl.wait(t)
	rej := h.mustReject(t)
	if !errors.Is(rej, ErrPeerExited) {
		t.Errorf("rejection %v, want the unknown program (ErrPeerExited)", rej)
	}
}

// TestProgramNamedDeleted checks that an executable whose name ends in
// " (deleted)" is judged by its file, not by its name.
func TestProgramNamedDeleted(t *testing.T) {
	bin := filepath.Join(sockDir(t), "peer (deleted)")
	if err := copyExecutable(bin); err != nil {
		t.Fatal(err)
	}
	h := keepListen(t, false, Program(bin))
	cl := startClient(t, bin, h.path, "hold", nil)
	c := h.mustAccept(t)
	if got := c.Peer().Program; got != bin {
		t.Errorf("Program = %q, want %q", got, bin)
	}
	if got := cl.line(t); got != "connected" {
		t.Fatalf("client said %q", got)
	}
	if err := c.Recheck(); err != nil {
		t.Errorf("Recheck: %v", err)
	}
}

// runReexec connects to SECNET_TEST_SOCK, keeps the socket across execve,
// prints "connected" and, on a line from stdin, executes its own program
// again, which prints "reexeced" and waits for stdin to close.
func runReexec() int {
	if os.Getenv("SECNET_TEST_REEXECED") != "" {
		fmt.Println("reexeced")
		var b [1]byte
		for {
			if _, err := os.Stdin.Read(b[:]); err != nil {
				return 0
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Println("executable:", err)
		return 2
	}
	os.Setenv("SECNET_TEST_REEXECED", "1") // for the program runExecPeer executes
	return runExecPeer(os.Getenv("SECNET_TEST_SOCK"), self)
}

// TestRecheckSeesReexec checks that Recheck reports a peer that executed
// its own program again (the same file, a new process image: it may have
// loaded other code, with LD_PRELOAD say).
func TestRecheckSeesReexec(t *testing.T) {
	bin := peerBinary(t)
	for _, tc := range []struct {
		name  string
		rule  Rule
		noMem bool // as a listener that cannot open /proc/<pid>/mem: environ
	}{
		{"uid", UID(os.Geteuid()), false},
		{"program", Program(bin), false},
		{"program/environ", Program(bin), true},
	} {
		rule := tc.rule
		t.Run(tc.name, func(t *testing.T) {
			h := keepListen(t, false, rule)
			h.ln.v.opts.noMemFile = tc.noMem
			cl := startPeer(t, bin, "reexec", nil, "SECNET_TEST_SOCK="+h.path)
			c := h.mustAccept(t)
			if s := cl.line(t); s != "connected" {
				t.Fatalf("peer said %q", s)
			}
			if err := c.Recheck(); err != nil {
				t.Fatalf("Recheck before exec: %v", err)
			}
			cl.stdin.Write([]byte("exec\n"))
			if s := cl.line(t); s != "reexeced" {
				t.Fatalf("peer said %q, want reexeced", s)
			}
			if err := c.Recheck(); !errors.Is(err, ErrProgramChanged) {
				t.Fatalf("Recheck after the peer executed itself again = %v, want ErrProgramChanged", err)
			}
			cl.stdin.Close()
			cl.wait(t)
			if err := c.Recheck(); !errors.Is(err, ErrPeerExited) {
				t.Fatalf("Recheck after the peer exited = %v, want ErrPeerExited", err)
			}
		})
	}
}

// pidnsReport is what runPIDNSListener prints.
type pidnsReport struct {
	Skip        string
	PeerPID     int               // the peer's pid in the listener's namespace
	Verdicts    map[string]string // rule -> "pass" or the reason
	Program     string            // Peer.Program
	OfProcess   string            // PeerOfProcess(PeerPID).Program, or the error
	Recheck     string            // the error of Recheck, or ""
	ProcIsOwn   bool
	ListenerPID int
}

// runPIDNSListener runs as pid 1 of a new pid namespace that still sees the
// host's /proc. It places its peer at the pid (in its namespace) that
// SECNET_TEST_DECOY has in the host's, listens, and reports what the rules
// say of the peer.
func runPIDNSListener() int {
	rep := pidnsReport{Verdicts: map[string]string{}, ListenerPID: os.Getpid()}
	defer func() { json.NewEncoder(os.Stdout).Encode(rep) }()
	decoy, _ := strconv.Atoi(os.Getenv("SECNET_TEST_DECOY"))
	sock := filepath.Join(os.Getenv("SECNET_TEST_SOCK"), "s")
	lc := ListenConfig{KeepPidfd: true}
	ln, err := lc.Listen(context.Background(), "unix", sock, Anyone())
	if err != nil {
		rep.Skip = "listen: " + err.Error()
		return 0
	}
	defer ln.Close()
	// Start one process first: Go's first StartProcess also clones a
	// probe, which would take a pid.
	if err := exec.Command("/bin/true").Run(); err != nil {
		rep.Skip = "run /bin/true: " + err.Error()
		return 0
	}
	// The next pid of this namespace is the decoy's number.
	if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(decoy-1)), 0); err != nil {
		rep.Skip = "ns_last_pid: " + err.Error()
		return 0
	}
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "SECNET_TEST_ROLE=client", "SECNET_TEST_SOCK="+sock, "SECNET_TEST_MODE=hold")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		rep.Skip = "start peer: " + err.Error()
		return 0
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	rep.PeerPID = cmd.Process.Pid
	if rep.PeerPID != decoy {
		rep.Skip = fmt.Sprintf("the peer got pid %d, not the decoy's %d", rep.PeerPID, decoy)
		return 0
	}
	c, err := ln.AcceptSecure()
	if err != nil {
		rep.Skip = "accept: " + err.Error()
		return 0
	}
	defer c.Close()
	p := c.Peer()
	rep.Program = p.Program
	decoyExe := os.Getenv("SECNET_TEST_DECOY_EXE")
	for name, r := range map[string]Rule{
		"program(decoy)":      Program(decoyExe),
		"program(self)":       Program(self),
		"not(program(self))":  Not(Program(self)),
		"not(program(decoy))": Not(Program(decoyExe)),
	} {
		rep.Verdicts[name] = "pass"
		if err := r.Check(&p); err != nil {
			rep.Verdicts[name] = err.Error()
		}
	}
	if pp, err := PeerOfProcess(rep.PeerPID); err != nil {
		rep.OfProcess = err.Error()
	} else {
		rep.OfProcess = pp.Program
	}
	if err := c.Recheck(); err != nil {
		rep.Recheck = err.Error()
	}
	own, _ := procOwn()
	rep.ProcIsOwn = own
	return 0
}

// TestProcOfAnotherPIDNamespace runs a listener in a new pid namespace
// that still sees the host's /proc, and gives its peer the pid that a
// decoy process (sleep) has on the host: /proc/<peer's pid> is the decoy.
// The rules must judge the peer, not the decoy.
func TestProcOfAnotherPIDNamespace(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep to act as the decoy")
	}
	if sleep, err = filepath.EvalSymlinks(sleep); err != nil {
		t.Fatal(err)
	}
	decoy := exec.Command(sleep, "60")
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { decoy.Process.Kill(); decoy.Wait() })
	dir := sockDir(t)
	ln := startPeer(t, bin, "pidnslistener", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID},
		"SECNET_TEST_SOCK="+dir, "SECNET_TEST_DECOY="+strconv.Itoa(decoy.Process.Pid), "SECNET_TEST_DECOY_EXE="+sleep)
	var rep pidnsReport
	if err := json.Unmarshal([]byte(ln.line(t)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Skip != "" {
		t.Skip(rep.Skip)
	}
	if rep.ListenerPID != 1 || rep.ProcIsOwn {
		t.Fatalf("listener pid %d, /proc its own: %v; want pid 1 of a new namespace with the host's /proc", rep.ListenerPID, rep.ProcIsOwn)
	}
	t.Logf("%+v", rep)
	if rep.Program != bin {
		t.Errorf("Peer.Program = %q, want the peer's %q (the decoy runs %s)", rep.Program, bin, sleep)
	}
	for rule, want := range map[string]bool{"program(decoy)": false, "program(self)": true,
		"not(program(self))": false, "not(program(decoy))": true} {
		if got := rep.Verdicts[rule] == "pass"; got != want {
			t.Errorf("%s: %s, want pass=%v", rule, rep.Verdicts[rule], want)
		}
	}
	if rep.OfProcess != bin {
		t.Errorf("PeerOfProcess: %q, want %q", rep.OfProcess, bin)
	}
	if rep.Recheck != "" {
		t.Errorf("Recheck: %s", rep.Recheck)
	}
}
