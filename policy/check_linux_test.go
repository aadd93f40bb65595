package policy

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/secnet/secnet"
)

// connectEnv, in the environment of this test binary, makes it a peer:
// it connects to the socket the variable names and waits for the test to
// close the connection (see TestMain).
const connectEnv = "SECNET_POLICY_TEST_CONNECT"

func TestMain(m *testing.M) {
	if path := os.Getenv(connectEnv); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			os.Exit(2)
		}
		io.Copy(io.Discard, c)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// peerProcess starts this test binary (or a copy at exe) as a client of a
// new socket, with the credentials cred (nil: ours) and in the namespaces
// of cloneflags, and returns its end of the connection.
func peerProcess(t *testing.T, exe string, cred *syscall.Credential, cloneflags uintptr) net.Conn {
	t.Helper()
	path := filepath.Join(openTempDir(t), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Let processes of other uids connect.
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), connectEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Cloneflags: cloneflags}
	if cloneflags&syscall.CLONE_NEWUSER != 0 {
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
	}
	if err := cmd.Start(); err != nil {
		if cloneflags != 0 {
			t.Skip("cannot start a process in new namespaces:", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkPeer verifies c, a connection from a peer, with the policy's
// rules, checks that pol.Check of the identity read agrees, and returns
// the names of the rules that failed, joined by commas.
func checkPeer(t *testing.T, pol *Policy, c net.Conn) string {
	t.Helper()
	sc, err := secnet.Verify(c, pol.Rules()...)
	got := failedRules(t, err)
	if sc != nil {
		p := sc.Peer()
		if again := failedRules(t, pol.Check(&p)); again != got {
			t.Errorf("Verify fails rules %q, Policy.Check %q", got, again)
		}
	}
	return got
}

// testBinary returns the path of this test binary, resolved through
// symlinks, readable and executable by every user.
func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// failedRules returns the names of the rules err says failed, joined by
// commas.
func failedRules(t *testing.T, err error) string {
	t.Helper()
	var rej *secnet.RejectError
	if err == nil {
		return ""
	}
	if !errors.As(err, &rej) {
		t.Fatalf("Check: %v, want a *secnet.RejectError", err)
	}
	var names []string
	for _, f := range rej.Failures {
		names = append(names, f.Rule)
	}
	return strings.Join(names, ",")
}

// TestPolicyCheck applies a decoded policy to real processes with other
// credentials, through secnet.Verify and Policy.Check.
func TestPolicyCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start processes with other uids and gids")
	}
	exe := testBinary(t)
	// A copy of the test binary that other uids can run.
	bin := filepath.Join(openTempDir(t), "peer")
	copyFile(t, exe, bin)
	pol, err := Parse(strings.NewReader(`
[[rule]]
not = { uid = 1 }

[[rule]]
[[rule.anyof]]
uid = 0
[[rule.anyof]]
ingroup = 4
program = "`+bin+`"
`), "")
	if err != nil {
		t.Fatal(err)
	}
	cred := func(uid, gid uint32, groups ...uint32) *syscall.Credential {
		return &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}
	}
	for _, tc := range []struct {
		name       string
		cred       *syscall.Credential
		cloneflags uintptr
		failed     string // names of the failed rules
	}{
		{"root", cred(0, 0), 0, ""},
		{"in group 4", cred(1000, 1000, 4), 0, ""},
		{"primary group 4", cred(1000, 4), 0, ""},
		{"not in group", cred(1000, 1000, 5), 0, "anyof"},
		{"uid 1", cred(1, 4), 0, "not"},
		{"uid 1 not in group", cred(1, 1), 0, "not,anyof"},
		// Not of a rule on ids needs the peer in our user namespace.
		{"another user namespace", nil, syscall.CLONE_NEWUSER, "not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := peerProcess(t, bin, tc.cred, tc.cloneflags)
			if got := checkPeer(t, pol, c); got != tc.failed {
				t.Errorf("failed rules %q, want %q", got, tc.failed)
			}
		})
	}
	// A peer whose identity was not read fails every rule, not included.
	if got := failedRules(t, pol.Check(&secnet.Peer{})); got != "not,anyof" {
		t.Errorf("a peer with nothing read: failed rules %q, want not,anyof", got)
	}
}

// TestPolicyProgramComparesFiles shows that a program rule from a policy
// compares files: a copy of the program elsewhere does not pass.
func TestPolicyProgramComparesFiles(t *testing.T) {
	exe := testBinary(t)
	pol, err := Parse(strings.NewReader("[[rule]]\nprogram = '"+exe+"'\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := checkPeer(t, pol, peerProcess(t, exe, nil, 0)); got != "" {
		t.Errorf("the test binary fails its own program rule: %q", got)
	}
	cp := filepath.Join(t.TempDir(), "copy")
	copyFile(t, exe, cp)
	if got := checkPeer(t, pol, peerProcess(t, cp, nil, 0)); got != "program" {
		t.Errorf("a copy of the program: failed rules %q, want program", got)
	}
}

// openTempDir returns a new temporary directory that every user can
// reach (t.TempDir's parent is private to us).
func openTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
