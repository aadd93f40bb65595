package policy

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/secnet/secnet"
)

// startProcess starts path (a program that sleeps: sleep) as a child with
// the credentials cred (nil: ours) and returns its identity, read as
// secnet.PeerOfProcess reads it.
func startProcess(t *testing.T, path string, cred *syscall.Credential) *secnet.Peer {
	t.Helper()
	cmd := exec.Command(path, "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	p, err := secnet.PeerOfProcess(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

func sleepProgram(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("sleep")
	if err == nil {
		path, err = filepath.EvalSymlinks(path)
	}
	if err != nil {
		t.Skip("no sleep program:", err)
	}
	return path
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
// credentials.
func TestPolicyCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start processes with other uids and gids")
	}
	sleep := sleepProgram(t)
	pol, err := Parse(strings.NewReader(`
[[rule]]
not = { uid = 1 }

[[rule]]
[[rule.anyof]]
uid = 0
[[rule.anyof]]
ingroup = 4
program = "`+sleep+`"
`), "")
	if err != nil {
		t.Fatal(err)
	}
	cred := func(uid, gid uint32, groups ...uint32) *syscall.Credential {
		return &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}
	}
	for _, tc := range []struct {
		name   string
		cred   *syscall.Credential
		failed string // names of the failed rules
	}{
		{"root", cred(0, 0), ""},
		{"in group 4", cred(1000, 1000, 4), ""},
		{"primary group 4", cred(1000, 4), ""},
		{"not in group", cred(1000, 1000, 5), "anyof"},
		{"uid 1", cred(1, 4), "not"},
		{"uid 1 not in group", cred(1, 1), "not,anyof"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProcess(t, sleep, tc.cred)
			err := pol.Check(p)
			if got := failedRules(t, err); got != tc.failed {
				t.Errorf("failed rules %q, want %q (%v)", got, tc.failed, err)
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
	sleep := sleepProgram(t)
	pol, err := Parse(strings.NewReader("[[rule]]\nprogram = '"+sleep+"'\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := pol.Check(startProcess(t, sleep, nil)); err != nil {
		t.Errorf("sleep fails its own program rule: %v", err)
	}
	cp := filepath.Join(t.TempDir(), "sleep")
	copyFile(t, sleep, cp)
	if err := pol.Check(startProcess(t, cp, nil)); err == nil || !strings.Contains(err.Error(), "is not "+sleep) {
		t.Errorf("a copy of the program passes: %v", err)
	}
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
