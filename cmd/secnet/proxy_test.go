package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func uidPolicy(uid int) string {
	return "[[rule]]\nuid = " + strconv.Itoa(uid) + "\n"
}

func TestProxyLetsAllowedCurlThrough(t *testing.T) {
	up := httpUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(os.Getuid()))
	out, status := curl(t, sock, "http://x/hello", nil)
	if status != 0 || out != "hello from upstream\n" {
		t.Fatalf("curl = %q, status %d; want the upstream's greeting", out, status)
	}
	body := strings.Repeat("request body ", 10000)
	out, status = curl(t, sock, "http://x/echo", nil, "--data-binary", body)
	if status != 0 || out != body {
		t.Fatalf("curl POST: status %d, got %d bytes back, want %d", status, len(out), len(body))
	}
	rec := p.waitLog(t, "allowed", 1)
	curlPath, _ := exec.LookPath("curl")
	curlPath, _ = filepath.EvalSymlinks(curlPath)
	if peer := rec.peer(); peer["uid"] != float64(os.Getuid()) || peer["program"] != curlPath {
		t.Errorf("allowed peer = %v, want uid %d program %s", peer, os.Getuid(), curlPath)
	}
}

func TestProxyCutsOffRejectedCurl(t *testing.T) {
	up := httpUpstream(t)
	other := os.Getuid() + 4242
	p, sock := startProxy(t, up, uidPolicy(other))
	out, status := curl(t, sock, "http://x/hello", nil)
	if status == 0 || strings.Contains(out, "hello") {
		t.Fatalf("curl got through a policy for uid %d: %q, status %d", other, out, status)
	}
	rec := p.waitLog(t, "rejected", 1)
	if fmt.Sprint(rec["failed"]) != "[uid]" || !strings.Contains(rec["reason"].(string), "is not "+strconv.Itoa(other)) {
		t.Errorf("rejection log = %v, want the uid rule and its reason", rec)
	}
	if len(p.logs("allowed")) != 0 {
		t.Error("the proxy logged an allowed connection")
	}
}

// TestProxyRejectsOtherUser runs curl as root and as daemon (uid 1)
// against a proxy that lets only root in.
func TestProxyRejectsOtherUser(t *testing.T) {
	requireRoot(t)
	up := httpUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(0), "--mode", "0666", "--owner", "daemon", "--group", "5")
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil || st.Mode&0777 != 0666 || st.Uid != 1 || st.Gid != 5 {
		t.Fatalf("socket file: mode %o uid %d gid %d, %v; want mode 0666, owner daemon (1), group 5", st.Mode&0777, st.Uid, st.Gid, err)
	}
	if rec := p.waitLog(t, "listening", 1); rec["mode"] != "0666" || rec["owner"] != named(1, userName(1)) || rec["group"] != named(5, groupName(5)) {
		t.Errorf("listening log = %v, want the socket's mode 0666, owner 1 and group 5", rec)
	}
	out, status := curl(t, sock, "http://x/hello", &syscall.Credential{Uid: 1, Gid: 1})
	if status == 0 || strings.Contains(out, "hello") {
		t.Fatalf("curl as uid 1 got through: %q, status %d", out, status)
	}
	rec := p.waitLog(t, "rejected", 1)
	if rec.peer()["uid"] != float64(1) || fmt.Sprint(rec["failed"]) != "[uid]" {
		t.Errorf("rejection log = %v, want peer uid 1, rule uid", rec)
	}
	if out, status := curl(t, sock, "http://x/hello", nil); status != 0 || out != "hello from upstream\n" {
		t.Fatalf("curl as root = %q, status %d", out, status)
	}
}

// TestProxyHalfClose sends a stream, shuts down the sending side, and
// reads the whole echo: the end of stream must travel both ways.
func TestProxyHalfClose(t *testing.T) {
	_, up := echoUpstream(t)
	_, sock := startProxy(t, up, uidPolicy(os.Getuid()))
	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	data := make([]byte, 4<<20)
	rand.Read(data)
	errs := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		errs <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo: got %d bytes, want the %d sent", len(got), len(data))
	}
}

// TestProxySIGTERMDrains: after SIGTERM the socket file is gone, an open
// connection goes on until it ends, and then the proxy exits 0.
func TestProxySIGTERMDrains(t *testing.T) {
	_, up := echoUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(os.Getuid()), "--grace", "1m")
	c := dial(t, sock)
	roundTrip(t, c, "before")
	p.cmd.Process.Signal(syscall.SIGTERM)
	rec := p.waitLog(t, "shutting down: no new connections", 1)
	if rec["open"] != float64(1) {
		t.Errorf("shutdown log = %v, want 1 open connection", rec)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after SIGTERM: %v, want it removed", err)
	}
	roundTrip(t, c, "still served while draining")
	if !p.running() {
		t.Fatal("the proxy exited with a connection open")
	}
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: %q, %v; want end of stream", rest, err)
	}
	if status := p.wait(t); status != 0 {
		t.Fatalf("proxy exit status %d, want 0", status)
	}
	p.waitLog(t, "stopped", 1)
}

// TestProxyGracePeriodEnds: a connection still open after the grace
// period is closed and the proxy exits.
func TestProxyGracePeriodEnds(t *testing.T) {
	_, up := echoUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(os.Getuid()), "--grace", "100ms")
	c := dial(t, sock)
	roundTrip(t, c, "hello")
	p.cmd.Process.Signal(syscall.SIGINT)
	if status := p.wait(t); status != 0 {
		t.Fatalf("proxy exit status %d, want 0", status)
	}
	p.waitLog(t, "grace period over: closing open connections", 1)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a connection the proxy closed", n)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after exit: %v, want it removed", err)
	}
}

// TestProxyUpstreamDown: while the upstream is down a peer gets a closed
// connection and the proxy logs the error and goes on.
func TestProxyUpstreamDown(t *testing.T) {
	echo, up := echoUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(os.Getuid()))
	c := dial(t, sock)
	roundTrip(t, c, "up")

	echo.close() // the upstream goes away, with an open connection
	os.Remove(up)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("connection whose upstream went away: %q, %v; want end of stream", rest, err)
	}
	c2 := dial(t, sock)
	c2.SetReadDeadline(time.Now().Add(20 * time.Second))
	if rest, err := io.ReadAll(c2); err != nil || len(rest) != 0 {
		t.Fatalf("connection while the upstream is down: %q, %v; want end of stream", rest, err)
	}
	rec := p.waitLog(t, "upstream unavailable: closing the connection", 1)
	if !strings.Contains(rec["err"].(string), "no such file") {
		t.Errorf("upstream error log = %v", rec)
	}
	if !p.running() {
		t.Fatal("the proxy exited when its upstream went away")
	}
	// The upstream comes back.
	_, up2 := echoUpstream(t)
	if err := os.Rename(up2, up); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, dial(t, sock), "back")
}

// TestProxyConnectionLimit: with --max-conns 1 a second connection is
// not served until the first ends.
func TestProxyConnectionLimit(t *testing.T) {
	echo, up := echoUpstream(t)
	p, sock := startProxy(t, up, uidPolicy(os.Getuid()), "--max-conns", "1")
	a := dial(t, sock)
	roundTrip(t, a, "a")
	b := dial(t, sock) // waits in the listen backlog
	if _, err := b.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := b.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the second connection was served while the first was open (read %d, %v)", n, err)
	}
	if n := echo.open(); n != 1 {
		t.Errorf("upstream has %d connections, want 1", n)
	}
	a.Close()
	b.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(b, buf); err != nil || buf[0] != 'b' {
		t.Fatalf("second connection after the first closed: %q, %v", buf, err)
	}
	// The log line is written before the echo, but it reaches p.stderr
	// through the copying goroutine of os/exec: wait for it.
	p.waitLog(t, "allowed", 2)
	if n := len(p.logs("allowed")); n != 2 {
		t.Errorf("%d connections allowed, want 2", n)
	}
}

func TestProxyRefusesBadInvocations(t *testing.T) {
	dir := sockDir(t)
	listen := filepath.Join(dir, "p.sock")
	good := writePolicy(t, uidPolicy(0))
	bad := writePolicy(t, "[[rule]]\nuid = 0\nuser = 'no-such-user-sn'\n")
	upSock := filepath.Join(dir, "up.sock")
	upLn, err := net.Listen("unix", upSock)
	if err != nil {
		t.Fatal(err)
	}
	defer upLn.Close()
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(upSock, link); err != nil {
		t.Fatal(err)
	}
	toListen := filepath.Join(dir, "to-listen.sock") // dangling until the proxy makes its socket
	if err := os.Symlink(listen, toListen); err != nil {
		t.Fatal(err)
	}
	long := "/tmp/" + strings.Repeat("x", 116)
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		msg    string
	}{
		{"no upstream", []string{"--listen", listen, "--policy", good}, exitUsage, "--upstream is required"},
		{"no policy", []string{"--listen", listen, "--upstream", "/x"}, exitUsage, "--policy is required"},
		{"bad mode", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--mode", "999"}, exitUsage, "--mode"},
		{"bad log format", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--log-format", "xml"}, exitUsage, "--log-format"},
		{"bad policy", []string{"--listen", listen, "--upstream", "/x", "--policy", bad}, exitError,
			bad + `:3: key rule.user: no user named "no-such-user-sn" exists`},
		{"missing policy", []string{"--listen", listen, "--upstream", "/x", "--policy", filepath.Join(dir, "none")}, exitError, "no such file"},
		{"unknown owner", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--owner", "no-such-user-sn"}, exitUsage, `--owner: no user named "no-such-user-sn"`},
		{"unknown group", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--group", "no-such-group-sn"}, exitUsage, `--group: no group named "no-such-group-sn"`},
		{"unknown upstream user", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--upstream-user", "no-such-user-sn"}, exitUsage, `--upstream-user: no user named "no-such-user-sn"`},
		{"listen is upstream", []string{"--listen", listen, "--upstream", listen, "--policy", good}, exitUsage, "--listen and --upstream name the same socket"},
		{"listen is upstream, another spelling", []string{"--listen", listen, "--upstream", dir + "/./p.sock", "--policy", good}, exitUsage, "--listen and --upstream name the same socket"},
		{"listen links to upstream", []string{"--listen", link, "--upstream", upSock, "--policy", good}, exitUsage, "--listen and --upstream name the same socket"},
		{"upstream links to listen", []string{"--listen", listen, "--upstream", toListen, "--policy", good}, exitUsage, "--listen and --upstream name the same socket"},
		{"negative grace", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--grace", "-1s"}, exitUsage, "--grace must not be negative"},
		{"negative dial timeout", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--dial-timeout", "-1s"}, exitUsage, "--dial-timeout must not be negative"},
		{"negative idle timeout", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--idle-timeout", "-5m"}, exitUsage, "--idle-timeout must not be negative"},
		{"no slots", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--max-conns", "0"}, exitUsage, "--max-conns must be at least 1"},
		{"long listen path", []string{"--listen", long, "--upstream", "/x", "--policy", good}, exitUsage, "--listen: the path is 121 bytes long; a socket address holds at most 107"},
		{"long upstream path", []string{"--listen", listen, "--upstream", long, "--policy", good}, exitUsage, "--upstream: the path is 121 bytes long"},
		{"bad log level", []string{"--listen", listen, "--upstream", "/x", "--policy", good, "--log-level", "loud"}, exitUsage, `--log-level: want debug, info, warn or error, not "loud"`},
		{"no listen", []string{"--upstream", "/x", "--policy", good}, exitUsage, "--listen is required (unless systemd passes the socket)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, status := runSecnet(t, append([]string{"proxy"}, tc.args...)...)
			if status != tc.status || !strings.Contains(stderr, tc.msg) {
				t.Errorf("status %d, stderr %q; want %d and %q", status, stderr, tc.status, tc.msg)
			}
			if _, err := os.Lstat(listen); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file left behind: %v", err)
			}
			if strings.Contains(stderr, "secnet: ") {
				t.Errorf("doubled prefix in %q", stderr)
			}
		})
	}
}
