package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests run the real command: TestMain builds it (with -race when the
// tests run with -race) into a temporary directory.
var secnetBin string

func TestMain(m *testing.M) {
	if os.Getenv("SECNET_TEST_ROLE") == "impostor" {
		os.Exit(runImpostor(os.Getenv("SECNET_TEST_SOCK")))
	}
	dir, err := os.MkdirTemp("", "snbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0755)
	secnetBin = filepath.Join(dir, "secnet")
	args := []string{"build", "-buildvcs=false", "-o", secnetBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command(goTool(), append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building secnet: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// syncBuffer collects the output of a process.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running secnet command.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error // of Wait, once done is closed
}

// start runs secnet with args; the process is killed when the test ends.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startProgram(t, secnetBin, args...)
}

// startProgram runs a program (that runs secnet) with args; the process
// is killed when the test ends.
func startProgram(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	// A race-enabled binary waits 1s at exit unless told not to.
	p.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			t.Error("the race detector found a data race in secnet")
		}
		if t.Failed() {
			t.Logf("secnet %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait(t testing.TB) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("secnet did not exit within 30s; stderr:\n%s", p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// runSecnet runs secnet to completion.
func runSecnet(t testing.TB, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	p := start(t, args...)
	status = p.wait(t)
	return p.stdout.String(), p.stderr.String(), status
}

// logRecord is one line of a --log-format json log.
type logRecord map[string]any

func (r logRecord) peer() map[string]any {
	m, _ := r["peer"].(map[string]any)
	return m
}

// logs returns the JSON log records with message msg.
func (p *proc) logs(msg string) []logRecord {
	var out []logRecord
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		var r logRecord
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// waitLog waits until the log has n records with message msg and returns
// the nth.
func (p *proc) waitLog(t testing.TB, msg string, n int) logRecord {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if rs := p.logs(msg); len(rs) >= n {
			return rs[n-1]
		}
		if time.Now().After(deadline) || !p.running() && len(p.logs(msg)) < n {
			t.Fatalf("no %dth log record %q; stderr:\n%s", n, msg, p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sockDir returns a short directory (sun_path holds 108 bytes) that every
// user can enter, removed after the test.
func sockDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// writePolicy writes a policy file and returns its path.
func writePolicy(t testing.TB, src string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(name, []byte(src), 0644); err != nil {
		t.Fatal(err)
	}
	return name
}

// startProxy runs secnet proxy in front of upstream with a policy and
// waits until it listens. It returns the proxy and its socket.
func startProxy(t testing.TB, upstream, policy string, extra ...string) (*proc, string) {
	t.Helper()
	listen := filepath.Join(sockDir(t), "p.sock")
	args := append([]string{"proxy", "--listen", listen, "--upstream", upstream, "--policy", writePolicy(t, policy),
		"--log-format", "json", "--log-level", "debug"}, extra...)
	p := start(t, args...)
	p.waitLog(t, "listening", 1)
	return p, listen
}

// httpUpstream serves HTTP on a new Unix socket: /hello answers a
// greeting, /echo echoes the request body.
func httpUpstream(t testing.TB) string {
	t.Helper()
	path := filepath.Join(sockDir(t), "up.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from upstream\n") })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // net/http does not read and write at once
		w.Write(b)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path
}

// echoServer echoes each connection until end of stream, then half-closes
// and closes it.
type echoServer struct {
	ln    *net.UnixListener
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func echoUpstream(t testing.TB) (*echoServer, string) {
	t.Helper()
	path := filepath.Join(sockDir(t), "echo.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				io.Copy(c, c)
				c.CloseWrite()
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(s.close)
	return s, path
}

// open returns the number of connections the server is serving.
func (s *echoServer) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// close stops the server and closes its connections.
func (s *echoServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// dial connects to sock.
func dial(t testing.TB, sock string) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UnixConn)
}

// roundTrip writes msg and reads it back from an echo.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("read %q, %v; want %q", buf, err, msg)
	}
}

// curl runs curl --unix-socket sock URL as cred (nil: as this process)
// and returns its output and exit status.
func curl(t testing.TB, sock, url string, cred *syscall.Credential, args ...string) (string, int) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (CI installs it: apt-get install curl)")
	}
	cmd := exec.Command(path, append([]string{"-sS", "--max-time", "20", "--unix-socket", sock}, append(args, url)...)...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out) + stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("curl: %v", err)
	}
	return string(out), 0
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a client as another user")
	}
}
