package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/secnet/secnet/policy"
)

// TestCheckPolicyFiles validates the example policies of the library's
// testdata: the good ones pass, each bad one fails with the line, key and
// message its first line ("# error: LINE KEY MESSAGE") names.
func TestCheckPolicyFiles(t *testing.T) {
	good, _ := filepath.Glob("../../policy/testdata/policies/*.toml")
	bad, _ := filepath.Glob("../../policy/testdata/policies/bad/*.toml")
	if len(good) == 0 || len(bad) == 0 {
		t.Fatal("no example policies in testdata/policies")
	}
	for _, name := range good {
		stdout, stderr, status := runSecnet(t, "check", "--policy", name)
		if status != exitOK || !strings.Contains(stdout, name+": valid") {
			t.Errorf("check %s: status %d, %s%s", name, status, stdout, stderr)
		}
	}
	for _, name := range bad {
		t.Run(filepath.Base(name), func(t *testing.T) {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			f := strings.SplitN(strings.TrimPrefix(first, "# error: "), " ", 3)
			want := "secnet check: " + name + ":" + f[0] + ": key " + f[1] + ": "
			if f[1] == "-" { // a TOML error that names no key
				f[1], want = "", "secnet check: "+name+":"+f[0]+": "
			}
			_, stderr, status := runSecnet(t, "check", "--policy", name)
			if status != exitError || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, f[2]) {
				t.Errorf("status %d, stderr %q; want %d and %q ... %q", status, stderr, exitError, want, f[2])
			}
			stdout, _, status := runSecnet(t, "check", "--json", "--policy", name)
			var res checkResult
			if err := json.Unmarshal([]byte(stdout), &res); err != nil || status != exitError {
				t.Fatalf("check --json: status %d, %q: %v", status, stdout, err)
			}
			if res.Valid || strconv.Itoa(res.Line) != f[0] || res.Key != f[1] {
				t.Errorf("check --json = %+v, want line %s key %s", res, f[0], f[1])
			}
		})
	}
}

// docPolicyStandIns replaces, in the policies of docs/policies, the names
// of things a test machine may lack by things every machine has.
var docPolicyStandIns = strings.NewReplacer(`"docker"`, `"root"`, `"/usr/bin/docker"`, `"/bin/sh"`)

// TestCheckDocPolicies runs secnet check on the example policies of
// docs/policies (a Docker socket, a systemd service) and contrib/policies
// (the Docker socket guard with routes): each is valid, or,
// on a machine without the group or program it names, valid once they are
// replaced by stand-ins.
func TestCheckDocPolicies(t *testing.T) {
	names, _ := filepath.Glob("../../docs/policies/*.toml")
	if len(names) < 2 {
		t.Fatalf("docs/policies holds %d policies, want the Docker and systemd examples", len(names))
	}
	// The policies shipped in contrib/policies (the Docker socket guard).
	contrib, _ := filepath.Glob("../../contrib/policies/*.toml")
	if len(contrib) == 0 {
		t.Fatal("contrib/policies holds no policies")
	}
	names = append(names, contrib...)
	for _, name := range names {
		t.Run(filepath.Base(name), func(t *testing.T) {
			stdout, stderr, status := runSecnet(t, "check", "--policy", name)
			if status == exitOK && strings.Contains(stdout, name+": valid") {
				return
			}
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			src := docPolicyStandIns.Replace(string(b))
			lacks := strings.Contains(stderr, `no group named "docker"`) || strings.Contains(stderr, `"/usr/bin/docker"`) || strings.Contains(stderr, "/usr/bin/docker: no such file")
			if src == string(b) || !lacks {
				t.Fatalf("check %s: status %d, %s%s", name, status, stdout, stderr)
			}
			t.Logf("this machine lacks what %s names (%s); checking it with stand-ins", name, strings.TrimSpace(stderr))
			standIn := writePolicy(t, src)
			stdout, stderr, status = runSecnet(t, "check", "--policy", standIn)
			if status != exitOK || !strings.Contains(stdout, standIn+": valid") {
				t.Errorf("check %s with stand-ins: status %d, %s%s", name, status, stdout, stderr)
			}
		})
	}
}

// TestCheckPid checks this test process against policies.
func TestCheckPid(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(os.Getpid())
	allow := writePolicy(t, "[[rule]]\nprogram = '"+exe+"'\nuid = "+strconv.Itoa(os.Geteuid())+"\n")
	stdout, stderr, status := runSecnet(t, "check", "--policy", allow, "--pid", pid)
	if status != exitOK || !strings.Contains(stdout, "verdict: allowed") || !strings.Contains(stdout, "pid:     "+pid) {
		t.Errorf("check --pid with a policy it passes: status %d\n%s%s", status, stdout, stderr)
	}
	deny := writePolicy(t, uidPolicy(os.Geteuid()+4242))
	stdout, stderr, status = runSecnet(t, "check", "--policy", deny, "--pid", pid, "--json")
	var res checkResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || status != exitRejected || res.Process == nil {
		t.Fatalf("check --pid with a policy it fails: status %d, %q %s: %v", status, stdout, stderr, err)
	}
	r := res.Process
	if r.PID != os.Getpid() || r.Verdict != "rejected" || len(r.Failures) != 1 || r.Failures[0].Rule != "uid" {
		t.Errorf("report = %+v, want this pid rejected by the uid rule", r)
	}
	_, stderr, status = runSecnet(t, "check", "--policy", deny, "--pid", "999999999")
	if status != exitError || !strings.Contains(stderr, "no process with pid 999999999") {
		t.Errorf("check of a missing pid: status %d, %q", status, stderr)
	}
}

// serveAndClose accepts connections on a new socket in this process and
// closes them.
func serveAndClose(t *testing.T) string {
	t.Helper()
	path := filepath.Join(sockDir(t), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return path
}

func TestWhoami(t *testing.T) {
	sock := serveAndClose(t)
	exe, _ := os.Executable()
	stdout, stderr, status := runSecnet(t, "whoami", "--json", sock)
	var r report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || status != exitOK {
		t.Fatalf("whoami: status %d, %q %s: %v", status, stdout, stderr, err)
	}
	if r.PID != os.Getpid() || r.UID != os.Geteuid() || r.Program != exe || r.Verdict != "" {
		t.Errorf("whoami = %+v, want this process (pid %d, %s) without a verdict", r, os.Getpid(), exe)
	}

	deny := writePolicy(t, uidPolicy(os.Geteuid()+4242))
	stdout, _, status = runSecnet(t, "whoami", sock, "--policy", deny) // flags after the path work too
	if status != exitRejected || !strings.Contains(stdout, "verdict: rejected") || !strings.Contains(stdout, "uid: peer uid") {
		t.Errorf("whoami with a policy the server fails: status %d\n%s", status, stdout)
	}
	allow := writePolicy(t, "[[rule]]\nsameuser = true\n")
	if stdout, _, status = runSecnet(t, "whoami", "--policy", allow, sock); status != exitOK || !strings.Contains(stdout, "verdict: allowed") {
		t.Errorf("whoami with a policy the server passes: status %d\n%s", status, stdout)
	}
	_, stderr, status = runSecnet(t, "whoami", filepath.Join(sockDir(t), "none"))
	if status != exitError || !strings.Contains(stderr, "no such file") {
		t.Errorf("whoami of a missing socket: status %d, %q", status, stderr)
	}
	if _, _, status = runSecnet(t, "whoami"); status != exitUsage {
		t.Errorf("whoami without a path: status %d, want %d", status, exitUsage)
	}
}

// TestInspect connects twice to secnet inspect: from this test process,
// which passes the policy, and from the secnet binary, which does not.
func TestInspect(t *testing.T) {
	exe, _ := os.Executable()
	sock := filepath.Join(sockDir(t), "i.sock")
	pol := writePolicy(t, "[[rule]]\nprogram = '"+exe+"'\n")
	p := start(t, "inspect", "--listen", sock, "--policy", pol, "--json", "--count", "2")
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "listening on") }, p)

	c := dial(t, sock)
	io.Copy(io.Discard, c) // inspect closes the connection when it has printed
	if _, stderr, status := runSecnet(t, demoClientCommand, sock); status != exitOK {
		t.Fatalf("demo-client: status %d, %s", status, stderr)
	}
	if status := p.wait(t); status != exitOK {
		t.Fatalf("inspect exit status %d", status)
	}
	var reports []report
	sc := bufio.NewScanner(strings.NewReader(p.stdout.String()))
	for sc.Scan() {
		var r report
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("inspect --json printed %q: %v", sc.Text(), err)
		}
		reports = append(reports, r)
	}
	if len(reports) != 2 {
		t.Fatalf("inspect printed %d reports, want 2:\n%s", len(reports), p.stdout.String())
	}
	if r := reports[0]; r.PID != os.Getpid() || r.Program != exe || r.Verdict != "allowed" {
		t.Errorf("first report = %+v, want this process, allowed", r)
	}
	if r := reports[1]; r.Program != secnetBin || r.Verdict != "rejected" || len(r.Failures) != 1 ||
		r.Failures[0].Rule != "program" || !strings.Contains(r.Failures[0].Reason, "is not "+exe) {
		t.Errorf("second report = %+v, want secnet rejected by the program rule", r)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file after inspect exited: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, p *proc) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if !p.running() || i > 4000 {
			t.Fatalf("condition not met; stderr:\n%s", p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDemo runs secnet demo: one verified peer, one rejected copy, and
// nothing left behind.
func TestDemo(t *testing.T) {
	stdout, stderr, status := runSecnet(t, "demo")
	if status != exitOK {
		t.Fatalf("demo: status %d\n%s%s", status, stdout, stderr)
	}
	for _, want := range []string{
		"Accepted. The listener verified:",
		"program: " + strconv.Quote(secnetBin),
		`The client read: "hello pid`,
		"Rejected:\n     program: peer program ",
		`secnet-copy" is not ` + secnetBin,
		"The client read: nothing: the server closed the connection",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	_, after, ok := strings.Cut(stdout, "\nRemoved ")
	dir, _, _ := strings.Cut(after, " ")
	if !ok || dir == "" {
		t.Fatalf("demo did not say what it removed:\n%s", stdout)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo left %s behind: %v", dir, err)
	}
}

func TestHelpVersionUsage(t *testing.T) {
	for _, name := range []string{"proxy", "inspect", "whoami", "check", "demo"} {
		stdout, _, status := runSecnet(t, name, "--help")
		if status != exitOK || !strings.HasPrefix(stdout, "usage: secnet "+name) || !strings.Contains(stdout, "Options:") {
			t.Errorf("%s --help: status %d\n%s", name, status, stdout)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if stdout, _, status := runSecnet(t, args...); status != exitOK || !strings.HasPrefix(stdout, "secnet ") {
			t.Errorf("%v: status %d, %q", args, status, stdout)
		}
	}
	if stdout, _, status := runSecnet(t, "--help"); status != exitOK || !strings.Contains(stdout, "secnet proxy") || strings.Contains(stdout, demoClientCommand) {
		t.Errorf("--help: status %d\n%s", status, stdout)
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"check"}, {"check", "--policy"}, {"inspect"}, {"demo", "extra"}, {"check", "--bogus"}} {
		if _, stderr, status := runSecnet(t, args...); status != exitUsage || stderr == "" {
			t.Errorf("%v: status %d, stderr %q; want %d and a message", args, status, stderr, exitUsage)
		}
	}
}

// TestCheckRoutes: check lists a policy's routes, as text and as JSON.
func TestCheckRoutes(t *testing.T) {
	const name = "../../policy/testdata/policies/routes.toml"
	stdout, stderr, status := runSecnet(t, "check", "--policy", name)
	if status != exitOK || !strings.Contains(stdout, `route "read", for anyof(uid(0), gid(0)):`+"\n    GET /items/\n") ||
		!strings.Contains(stdout, "matched without a leading /api/v{version}") {
		t.Errorf("check: status %d\n%s%s", status, stdout, stderr)
	}
	stdout, _, _ = runSecnet(t, "check", "--json", "--policy", name)
	var res checkResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res.Routes) != 3 || res.Routes[2].Name != "write" ||
		res.Routes[2].Rules[0] != "uid(0)" || len(res.Routes[0].Rules) != 0 || res.VersionPrefix != "/api/v{version}" {
		t.Errorf("check --json: %v, %+v", err, res)
	}
}

// TestCheckHelpNamesEveryKey: check --help, the policy format for a
// machine without the docs, names every rule key the policy package
// knows (as its error for an unknown key lists them).
func TestCheckHelpNamesEveryKey(t *testing.T) {
	_, err := policy.Parse(strings.NewReader("[[rule]]\nnope = 1\n"), "p.toml")
	_, list, ok := strings.Cut(fmt.Sprint(err), "(the rules are ")
	keys := strings.Split(strings.TrimSuffix(list, ")"), ", ")
	if !ok || len(keys) < 10 {
		t.Fatalf("cannot read the rule keys from %v", err)
	}
	help, _, _ := runSecnet(t, "check", "--help")
	for _, k := range keys {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(k) + `\b`).MatchString(help) {
			t.Errorf("check --help does not name the key %q", k)
		}
	}
}
