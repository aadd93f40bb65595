package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// replaceFile writes a file's new content under another name and renames
// it into place, as editors and configuration tools do, so that a reload
// never reads half a file.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// loadClients runs clients against sock until stop is closed: n Go
// clients that connect, do a round trip through the echo upstream and
// close, and, where installed, socat and secnet whoami as real client
// processes. It returns a function that stops them and returns how many
// connections were served and the failures.
func loadClients(t *testing.T, sock string, n int) func() (served int64, failures []string) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var served atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte("ping " + strconv.Itoa(i))
			buf := make([]byte, len(msg))
			for !stopped() {
				c, err := net.Dial("unix", sock)
				if err != nil {
					fail("dial: %v", err)
					return
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				_, err = c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, buf)
				}
				c.Close()
				if err != nil || string(buf) != string(msg) {
					fail("round trip: %q, %v", buf, err)
					return
				}
				served.Add(1)
			}
		}()
	}
	if socat, err := exec.LookPath("socat"); err == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped() {
				cmd := exec.Command(socat, "-t", "5", "-", "UNIX-CONNECT:"+sock)
				cmd.Stdin = strings.NewReader("socat ping\n")
				out, err := cmd.Output()
				if err != nil || string(out) != "socat ping\n" {
					fail("socat: %q, %v", out, err)
					return
				}
				served.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stopped() {
			cmd := exec.Command(secnetBin, "whoami", "--json", sock)
			cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fail("secnet whoami: %s, %v", out, err)
				return
			}
			served.Add(1)
		}
	}()
	return func() (int64, []string) {
		close(stop)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return served.Load(), failures
	}
}

// TestProxyReloadUnderLoad reloads the policy with SIGHUP again and again
// while clients connect without pause: no connection is dropped, a file
// that does not load leaves the policy in force, and a policy that shuts
// everyone out applies to new connections while an open one goes on.
func TestProxyReloadUnderLoad(t *testing.T) {
	_, up := echoUpstream(t)
	self := os.Getuid()
	polA := uidPolicy(self)
	polB := "[[rule]]\nuid = [" + strconv.Itoa(self) + ", 4242]\n"
	p, sock := startProxy(t, up, polA, "--log-level", "info")
	start := p.waitLog(t, "listening", 1)
	policyPath := start["policy"].(string)
	digests := map[string]bool{start["sha256"].(string)[:12]: true}
	if start["rule_count"] != float64(1) {
		t.Errorf("listening log = %v, want rule_count 1", start)
	}

	held := dial(t, sock)
	roundTrip(t, held, "held open across reloads")

	stopLoad := loadClients(t, sock, 3)
	const reloads = 12
	for i := 1; i <= reloads; i++ {
		replaceFile(t, policyPath, map[bool]string{true: polB, false: polA}[i%2 == 1])
		p.cmd.Process.Signal(syscall.SIGHUP)
		rec := p.waitLog(t, "policy reloaded", i)
		digests[rec["sha256"].(string)[:12]] = true
		time.Sleep(30 * time.Millisecond)
	}
	// A broken file: the policy in force stays.
	replaceFile(t, policyPath, "[[rule]]\nuid = 'root'\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	rec := p.waitLog(t, "reload failed: keeping the policy in force", 1)
	if err, _ := rec["err"].(string); !strings.HasPrefix(err, policyPath+":2: ") {
		t.Errorf("failed reload log = %v, want the error at %s:2", rec, policyPath)
	}
	time.Sleep(100 * time.Millisecond) // clients go on under the old policy
	served, failures := stopLoad()
	if len(failures) > 0 {
		t.Fatalf("%d connections failed during reloads, the first: %s", len(failures), failures[0])
	}
	if served < reloads {
		t.Errorf("only %d connections were served during %d reloads", served, reloads)
	}
	if len(p.logs("rejected")) != 0 {
		t.Errorf("connections rejected during reloads of policies that let them in: %v", p.logs("rejected"))
	}
	roundTrip(t, held, "still served")

	// A policy nobody here passes: new connections are rejected, the open
	// one goes on.
	replaceFile(t, policyPath, uidPolicy(self+4242))
	p.cmd.Process.Signal(syscall.SIGHUP)
	rec = p.waitLog(t, "policy reloaded", reloads+1)
	deny := rec["sha256"].(string)[:12]
	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("a new connection under a policy that shuts it out read %d bytes, %v", n, err)
	}
	if rej := p.waitLog(t, "rejected", 1); rej["policy_sha256"] != deny {
		t.Errorf("rejection log = %v, want policy_sha256 %s", rej, deny)
	}
	roundTrip(t, held, "open connections are untouched")

	// Each allowed connection was checked against one whole version.
	for _, a := range p.logs("allowed") {
		if d, _ := a["policy_sha256"].(string); !digests[d] {
			t.Fatalf("allowed connection names policy %q, not one of the versions %v", d, digests)
		}
	}
}

// TestProxySocketActivation runs the proxy under systemd-socket-activate,
// which creates the socket and passes it as systemd does: with --listen
// naming it (the invocation that once failed with "address already in
// use") and without.
func TestProxySocketActivation(t *testing.T) {
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed (package systemd; CI installs it)")
	}
	up := httpUpstream(t)
	pol := writePolicy(t, uidPolicy(os.Getuid()))
	for _, withListen := range []bool{true, false} {
		t.Run(map[bool]string{true: "listen", false: "nolisten"}[withListen], func(t *testing.T) {
			sock := filepath.Join(sockDir(t), "act.sock")
			args := []string{"-l", sock, "--fdname=api", "-E", "GORACE=atexit_sleep_ms=0", secnetBin, "proxy",
				"--upstream", up, "--policy", pol, "--log-format", "json"}
			if withListen {
				args = append(args, "--listen", sock)
			}
			p := startProgram(t, sa, args...)
			// systemd-socket-activate starts the service at the first
			// connection.
			waitDialable(t, sock, p)
			if out, status := curl(t, sock, "http://x/hello", nil); status != 0 || out != "hello from upstream\n" {
				t.Fatalf("curl through the activated proxy = %q, status %d", out, status)
			}
			rec := p.waitLog(t, "listening", 1)
			if rec["listen"] != sock || rec["activated"] != "api" || rec["mode"] == nil {
				t.Errorf("listening log = %v, want %s passed as \"api\", with its mode", rec, sock)
			}
			p.waitLog(t, "allowed", 1)
			stdout, _, status := runSecnet(t, "whoami", sock)
			if status != exitOK || !strings.Contains(stdout, "pid:     "+strconv.Itoa(p.cmd.Process.Pid)) {
				t.Errorf("whoami of the activated socket: status %d\n%s", status, stdout)
			}
			p.cmd.Process.Signal(syscall.SIGTERM)
			if status := p.wait(t); status != 0 {
				t.Errorf("exit status %d after SIGTERM", status)
			}
			// The socket belongs to systemd: the proxy leaves it.
			if _, err := os.Lstat(sock); err != nil {
				t.Errorf("the activated socket file is gone: %v", err)
			}
		})
	}
	t.Run("wronglisten", func(t *testing.T) {
		sock := filepath.Join(sockDir(t), "act.sock")
		p := startProgram(t, sa, "-l", sock, "-E", "GORACE=atexit_sleep_ms=0", secnetBin, "proxy",
			"--listen", sock+".other", "--upstream", up, "--policy", pol)
		waitDialable(t, sock, p)
		if status := p.wait(t); status != exitUsage || !strings.Contains(p.stderr.String(), "none of the sockets systemd passed") {
			t.Errorf("status %d, stderr %q; want %d and the sockets passed", status, p.stderr.String(), exitUsage)
		}
	})
}

// waitDialable waits until a connection to sock succeeds (the file
// appears at bind, before listen), and closes it.
func waitDialable(t *testing.T, sock string, p *proc) {
	t.Helper()
	waitFor(t, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, p)
}

var impostorOnce sync.Once

// impostorBinary is a copy of the test binary that every user can run.
func impostorBinary(t testing.TB) string {
	bin := filepath.Join(filepath.Dir(secnetBin), "impostor")
	impostorOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			return
		}
		b, err := os.ReadFile(self)
		if err == nil {
			os.WriteFile(bin, b, 0755)
		}
	})
	if _, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// runImpostor is the "impostor" role: it listens at sock (mode 0777),
// prints "ready", and prints "got N bytes: %q" with what each connection
// sent until it ended.
func runImpostor(sock string) int {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	os.Chmod(sock, 0777)
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		fmt.Printf("got %d bytes: %q\n", len(b), b)
	}
}

// TestProxyRefusesImpostorUpstream: while the real server is down, an
// ordinary user listens at the upstream path in a shared directory. A
// verified client's secret must not reach it.
func TestProxyRefusesImpostorUpstream(t *testing.T) {
	requireRoot(t)
	shared := sockDir(t)
	os.Chmod(shared, 0o1777)
	up := filepath.Join(shared, "up.sock")
	p, sock := startProxy(t, up, uidPolicy(0))
	if rec := p.waitLog(t, "the upstream socket does not exist yet: connections are closed until it does", 1); rec["upstream"] != up {
		t.Errorf("warning = %v", rec)
	}

	cmd := exec.Command(impostorBinary(t))
	cmd.Env = append(os.Environ(), "SECNET_TEST_ROLE=impostor", "SECNET_TEST_SOCK="+up)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("impostor: %q", lines.Text())
	}

	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "AUTH password=hunter2\r\n")
	c.CloseWrite()
	// Closed with the request unread: end of stream or a reset.
	if b, err := io.ReadAll(c); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(b) != 0 {
		t.Errorf("client read %q, %v; want the connection closed", b, err)
	}
	rec := p.waitLog(t, "upstream refused: its server fails the upstream rule; closing the connection", 1)
	server, _ := rec["server"].(map[string]any)
	if server["uid"] != float64(1) || fmt.Sprint(rec["failed"]) != "[uid]" {
		t.Errorf("refusal log = %v, want the server's uid 1 and the failed rule [uid]", rec)
	}
	if !lines.Scan() {
		t.Fatal("the impostor printed nothing for the proxy's connection")
	}
	if got := lines.Text(); got != `got 0 bytes: ""` {
		t.Fatalf("the impostor received %s", got)
	}

	// --upstream-user lets the impostor's user in, as an operator may.
	p2, sock2 := startProxy(t, up, uidPolicy(0), "--upstream-user", "daemon")
	c2 := dial(t, sock2)
	io.WriteString(c2, "for daemon")
	c2.CloseWrite()
	if !lines.Scan() || lines.Text() != `got 10 bytes: "for daemon"` {
		t.Fatalf("with --upstream-user daemon the upstream got %q", lines.Text())
	}
	if len(p2.logs("upstream refused: its server fails the upstream rule; closing the connection")) != 0 {
		t.Error("refused an upstream of an allowed user")
	}
}

// TestProxyWarnsReachableUpstream: an upstream socket every user may
// connect to lets clients go around the proxy; the proxy says so.
func TestProxyWarnsReachableUpstream(t *testing.T) {
	_, up := echoUpstream(t)
	if err := os.Chmod(up, 0666); err != nil {
		t.Fatal(err)
	}
	p, _ := startProxy(t, up, uidPolicy(os.Getuid()))
	rec := p.waitLog(t, "the upstream socket is reachable by other users: they can connect to it directly, going around the policy; make it reachable by the proxy's user alone (mode 0600, or a directory of mode 0700)", 1)
	if rec["reachable_by"] != "every user" || rec["mode"] != "0666" {
		t.Errorf("warning = %v", rec)
	}
	os.Chmod(up, 0600)
	p2, _ := startProxy(t, up, uidPolicy(os.Getuid()))
	time.Sleep(50 * time.Millisecond)
	for _, line := range strings.Split(p2.stderr.String(), "\n") {
		if strings.Contains(line, `"level":"WARN"`) {
			t.Errorf("warning for an upstream of mode 0600: %s", line)
		}
	}
}

// silentUpstream accepts connections and never reads, writes or closes
// them; it sends each to the channel it returns.
func silentUpstream(t *testing.T) (string, <-chan net.Conn) {
	path := filepath.Join(sockDir(t), "silent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 100)
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return path, conns
}

// TestProxyReleasesSlotsOfGoneClients: four clients connect, send a
// request and exit behind an upstream that never answers; with
// --max-conns 4 a fifth client must still be served.
func TestProxyReleasesSlotsOfGoneClients(t *testing.T) {
	up, conns := silentUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(os.Getuid()), "--max-conns", "4")
	for i := range 4 {
		// curl gives up after a second and exits: a client that is gone.
		if _, status := curl(t, sock, "http://x/", nil, "--max-time", "1"); status != 28 {
			t.Fatalf("curl %d: exit status %d, want 28 (timed out)", i, status)
		}
		select {
		case <-conns:
		case <-time.After(20 * time.Second):
			t.Fatalf("the upstream did not get connection %d", i)
		}
	}
	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "fifth")
	var fifth net.Conn
	select {
	case fifth = <-conns:
	case <-time.After(20 * time.Second):
		t.Fatalf("the fifth client was not served; log:\n%s", p.stderr.String())
	}
	buf := make([]byte, 5)
	fifth.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(fifth, buf); err != nil || string(buf) != "fifth" {
		t.Fatalf("upstream read %q, %v", buf, err)
	}
	io.WriteString(fifth, "served")
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "served" {
		t.Fatalf("fifth client read %q, %v", got, err)
	}
	closed := p.waitLog(t, "closed", 1)
	if closed["err"] != errHangup.Error() {
		t.Errorf("closed log = %v, want err %q", closed, errHangup)
	}
	// With four slots taken by the first clients the limit was reached,
	// or not if each was released before the next came: either way
	// every "reached" is followed by a "cleared".
	if r, c := len(p.logs("connection limit reached: new connections wait in the listen backlog")),
		len(p.logs("connection limit cleared: accepting again")); r != c && r != c+1 {
		t.Errorf("limit reached %d times, cleared %d times", r, c)
	}
}

// TestProxyConnectionLimitLogs: the log says once when --max-conns is
// reached and once when it clears.
func TestProxyConnectionLimitLogs(t *testing.T) {
	_, up := echoUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(os.Getuid()), "--max-conns", "2")
	a, b := dial(t, sock), dial(t, sock)
	roundTrip(t, a, "a")
	roundTrip(t, b, "b")
	reached := p.waitLog(t, "connection limit reached: new connections wait in the listen backlog", 1)
	if reached["max_conns"] != float64(2) {
		t.Errorf("limit log = %v", reached)
	}
	c := dial(t, sock) // waits in the backlog
	a.Close()
	roundTrip(t, c, "c")
	p.waitLog(t, "connection limit cleared: accepting again", 1)
	if n := len(p.logs("connection limit reached: new connections wait in the listen backlog")); n > 2 {
		t.Errorf("limit reached logged %d times", n)
	}
}

// TestProxyHalfCloseIsNotHangup: a client that shuts down its sending
// side and waits gets a reply the upstream sends long after.
func TestProxyHalfCloseIsNotHangup(t *testing.T) {
	up, conns := silentUpstream(t)
	_, sock := startProxy(t, up, uidPolicy(os.Getuid()), "--idle-timeout", "1m")
	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "question")
	c.CloseWrite()
	u := <-conns
	u.SetDeadline(time.Now().Add(20 * time.Second))
	if b, err := io.ReadAll(u); err != nil || string(b) != "question" {
		t.Fatalf("upstream read %q, %v", b, err)
	}
	time.Sleep(300 * time.Millisecond)
	io.WriteString(u, "late answer")
	u.(*net.UnixConn).CloseWrite()
	if b, err := io.ReadAll(c); err != nil || string(b) != "late answer" {
		t.Fatalf("half-closed client read %q, %v", b, err)
	}
}

// TestProxyIdleTimeout: a connection that moves nothing for
// --idle-timeout is closed; one that keeps moving is not.
func TestProxyIdleTimeout(t *testing.T) {
	_, up := echoUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(os.Getuid()), "--idle-timeout", "300ms")
	busy := dial(t, sock)
	for range 8 {
		roundTrip(t, busy, "busy")
		time.Sleep(100 * time.Millisecond)
	}
	idle := dial(t, sock)
	roundTrip(t, idle, "then idle")
	idle.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("idle connection: read %d, %v; want end of stream", n, err)
	}
	rec := p.waitLog(t, "closed: idle", 1)
	if rec["idle_timeout"] != "300ms" {
		t.Errorf("idle log = %v", rec)
	}
}

// kernelThreadPid returns the pid of a kernel thread, or 0 when this pid
// namespace shows none.
func kernelThreadPid() int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && kernelThread(pid) {
			return pid
		}
	}
	return 0
}

// TestCommandsRefuseBadFlags: negative counts and durations, pids that
// are not processes and paths no socket address holds are refused with a
// message that says so, and no message says "secnet: " twice.
func TestCommandsRefuseBadFlags(t *testing.T) {
	pol := writePolicy(t, uidPolicy(0))
	long := "/tmp/" + strings.Repeat("y", 116)
	cases := []struct {
		args   []string
		status int
		msg    string
	}{
		{[]string{"inspect", "--listen", "/tmp/x.sock", "--count", "-1"}, exitUsage, "--count must not be negative (got -1)"},
		{[]string{"inspect", "--listen", long}, exitUsage, "--listen: the path is 121 bytes long; a socket address holds at most 107"},
		{[]string{"whoami", "--timeout", "-1s", "/tmp/x.sock"}, exitUsage, "--timeout must not be negative (got -1s)"},
		{[]string{"whoami", long}, exitUsage, "PATH: the path is 121 bytes long"},
		{[]string{"check", "--policy", pol, "--pid", "0"}, exitUsage, "--pid must be a process id, 1 or more (got 0)"},
		{[]string{"check", "--policy", pol, "--pid", "-4"}, exitUsage, "--pid must be a process id, 1 or more (got -4)"},
		{[]string{"check", "--policy", pol, "--pid", "999999999"}, exitError, "no process with pid 999999999"},
	}
	if kt := kernelThreadPid(); kt != 0 {
		cases = append(cases, struct {
			args   []string
			status int
			msg    string
		}{[]string{"check", "--policy", pol, "--pid", strconv.Itoa(kt)}, exitError, "pid " + strconv.Itoa(kt) + " is a kernel thread"})
	} else {
		t.Log("no kernel thread visible in this pid namespace: not checking that case")
	}
	for _, tc := range cases {
		_, stderr, status := runSecnet(t, tc.args...)
		if status != tc.status || !strings.Contains(stderr, tc.msg) || strings.Contains(stderr, "secnet: ") {
			t.Errorf("%v: status %d, stderr %q; want %d and %q", tc.args, status, stderr, tc.status, tc.msg)
		}
	}
}

// TestCheckJSONOneSchema: check --json prints the same object with and
// without --pid; process is null without it.
func TestCheckJSONOneSchema(t *testing.T) {
	pol := writePolicy(t, uidPolicy(os.Geteuid()))
	keys := func(args ...string) (map[string]any, []string) {
		stdout, stderr, _ := runSecnet(t, append([]string{"check", "--json", "--policy", pol}, args...)...)
		var m map[string]any
		if err := json.Unmarshal([]byte(stdout), &m); err != nil {
			t.Fatalf("check --json %v: %q %s: %v", args, stdout, stderr, err)
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return m, ks
	}
	without, k1 := keys()
	with, k2 := keys("--pid", strconv.Itoa(os.Getpid()))
	if strings.Join(k1, ",") != strings.Join(k2, ",") {
		t.Errorf("keys without --pid %v, with %v", k1, k2)
	}
	if without["process"] != nil || without["valid"] != true {
		t.Errorf("without --pid: %v", without)
	}
	proc, _ := with["process"].(map[string]any)
	if proc["pid"] != float64(os.Getpid()) || proc["verdict"] != "allowed" {
		t.Errorf("with --pid: %v", with)
	}
}

// TestHelpShowsEveryFlag: each command's --help lists every flag in the
// --flag form of its usage line, and points at no file of the source
// tree.
func TestHelpShowsEveryFlag(t *testing.T) {
	for _, name := range []string{"proxy", "inspect", "whoami", "check", "demo"} {
		stdout, _, _ := runSecnet(t, name, "--help")
		usage, _, _ := strings.Cut(stdout, "\n")
		for _, word := range strings.Fields(usage) {
			word = strings.Trim(word, "[]")
			if strings.HasPrefix(word, "-") && !strings.HasPrefix(word, "--") {
				t.Errorf("%s: usage line has %q", name, word)
			}
			if strings.HasPrefix(word, "--") && !strings.Contains(stdout, "\n  "+word) {
				t.Errorf("%s --help: the usage line's %s is not among the options", name, word)
			}
		}
		for _, line := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(line, "  -") && !strings.HasPrefix(line, "  --") {
				t.Errorf("%s --help: option in the single-dash form: %q", name, line)
			}
		}
		if strings.Contains(stdout, "docs/") || strings.Contains(stdout, ".md") {
			t.Errorf("%s --help points at a file an installed binary lacks:\n%s", name, stdout)
		}
	}
	if stdout, _, _ := runSecnet(t, "--help"); strings.Contains(stdout, "see docs/") {
		t.Errorf("--help points at docs/:\n%s", stdout)
	}
}

// TestUnreadOnOneLine: an attribute error joined from several is logged
// once, on one line.
func TestUnreadOnOneLine(t *testing.T) {
	e := errors.New("peer process has exited")
	joined := errors.Join(fmt.Errorf("program: %w", e), fmt.Errorf("program: %w", e), errors.New("label: no LSM"))
	if got := oneLine(joined); got != "program: peer process has exited; label: no LSM" {
		t.Errorf("oneLine = %q", got)
	}
}

// TestInspectSIGHUP: a hangup ends inspect as SIGTERM does, removing its
// socket file.
func TestInspectSIGHUP(t *testing.T) {
	sock := filepath.Join(sockDir(t), "i.sock")
	p := start(t, "inspect", "--listen", sock)
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "listening on") }, p)
	if !strings.Contains(p.stderr.String(), "(mode ") {
		t.Errorf("listening line lacks the socket's mode: %q", p.stderr.String())
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	if status := p.wait(t); status != exitOK {
		t.Errorf("inspect after SIGHUP: status %d", status)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file after SIGHUP: %v", err)
	}
}

// TestSystemdUnits checks the unit files of contrib/systemd with
// systemd-analyze verify (an instance of each, the service pointing at
// the secnet built for the tests): no unknown key, no bad value.
func TestSystemdUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (package systemd; CI installs it)")
	}
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"secnet-proxy@.socket", "secnet-proxy@.service"} {
		b, err := os.ReadFile(filepath.Join("../../contrib/systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "/usr/local/bin/secnet", secnetBin)
		unit := filepath.Join(dir, strings.Replace(name, "@.", "@test.", 1))
		if err := os.WriteFile(unit, []byte(text), 0644); err != nil {
			t.Fatal(err)
		}
		units = append(units, unit)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
