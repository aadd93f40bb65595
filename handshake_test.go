package secnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func init() {
	childRoles["hsclient"] = runHandshakeClient
	childRoles["hsrelay"] = runHandshakeRelay
	childRoles["hsactivated"] = runHandshakeActivated
}

// runHandshakeActivated serves the listening socket it inherits as fd 3,
// as a service that systemd activated, with NewListener(Anyone(),
// SharedSecret(SECNET_TEST_KEY)); it prints "ready", then "accepted" or
// "rejected: <reason>" for each connection, until stdin closes.
func runHandshakeActivated() int {
	key, _ := hex.DecodeString(os.Getenv("SECNET_TEST_KEY"))
	f := os.NewFile(3, "activated")
	inner, err := net.FileListener(f)
	f.Close()
	if err != nil {
		fmt.Println("FileListener:", err)
		return 2
	}
	ln := NewListener(inner, Anyone(), SharedSecret(key))
	ln.SetRejected(func(e *RejectError) { fmt.Println("rejected:", e) })
	go func() {
		os.Stdin.Read(make([]byte, 1))
		ln.Close()
	}()
	fmt.Println("ready")
	for {
		c, err := ln.AcceptSecure()
		if err != nil {
			return 0
		}
		fmt.Println("accepted")
		c.Write([]byte("ok"))
		c.Close()
	}
}

// runHandshakeClient connects to SECNET_TEST_SOCK and plays the client's
// side of SharedSecret with the key SECNET_TEST_KEY (hex), in one of the
// modes of SECNET_TEST_MODE:
//
//	prove       answer with the key (ProveSharedSecret), then talk
//	silent      connect, print "connected", never answer
//	garbage     answer with random bytes, print the verdict code
//	short       send 10 bytes of an answer and close
//	othernonce  answer rightly, but for another challenge; print the verdict code
func runHandshakeClient() int {
	sock, mode := os.Getenv("SECNET_TEST_SOCK"), os.Getenv("SECNET_TEST_MODE")
	key, err := hex.DecodeString(os.Getenv("SECNET_TEST_KEY"))
	if err != nil {
		fmt.Println("bad key:", err)
		return 2
	}
	if mode == "prove" {
		d := Dialer{Rules: []Rule{Anyone()}, Handshake: ProveSharedSecret(key)}
		c, err := d.DialSecure(context.Background(), "unix", sock)
		if err != nil {
			fmt.Printf("refused (handshake refused: %v): %v\n", errors.Is(err, ErrHandshakeRefused), err)
			return 0
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			fmt.Println("read:", err)
			return 0
		}
		fmt.Println("ok", string(buf))
		return 0
	}
	c, err := Dial("unix", sock, Anyone())
	if err != nil {
		fmt.Println("dial:", err)
		return 2
	}
	defer c.Close()
	if mode == "silent" {
		fmt.Println("connected")
		io.Copy(io.Discard, os.Stdin)
		return 0
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var ch [ssChallenge]byte
	if _, err := io.ReadFull(c, ch[:]); err != nil {
		fmt.Println("challenge:", err)
		return 2
	}
	ans := make([]byte, ssAnswer)
	switch mode {
	case "garbage":
		rand.Read(ans)
	case "short", "othernonce":
		nonce := ch[8:]
		if mode == "othernonce" {
			nonce[0] ^= 1
		}
		copy(ans, ssAnswerMagic[:])
		ans[4] = ssVersion
		uid := uint32(c.Peer().UID)
		ans[8], ans[9], ans[10], ans[11] = byte(uid>>24), byte(uid>>16), byte(uid>>8), byte(uid)
		copy(ans[12:], ssMAC(key, nonce, uid))
		if mode == "short" {
			c.Write(ans[:10])
			fmt.Println("sent")
			return 0
		}
	default:
		fmt.Println("unknown mode", mode)
		return 2
	}
	c.Write(ans)
	var v [ssVerdictLen]byte
	if _, err := io.ReadFull(c, v[:]); err != nil {
		fmt.Println("verdict:", err)
		return 0
	}
	fmt.Println("verdict", v[5])
	return 0
}

// runHandshakeRelay listens on SECNET_TEST_RELAY, prints "ready", and
// relays the one connection it accepts to SECNET_TEST_SOCK, both ways: a
// process of another user placed between a client and the server.
func runHandshakeRelay() int {
	path := os.Getenv("SECNET_TEST_RELAY")
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Println("listen:", err)
		return 2
	}
	defer ln.Close()
	os.Chmod(path, 0666)
	fmt.Println("ready")
	in, err := ln.Accept()
	if err != nil {
		fmt.Println("accept:", err)
		return 2
	}
	defer in.Close()
	out, err := net.Dial("unix", os.Getenv("SECNET_TEST_SOCK"))
	if err != nil {
		fmt.Println("dial:", err)
		return 2
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	relay := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.(*net.UnixConn).CloseWrite()
		done <- struct{}{}
	}
	go relay(out, in)
	go relay(in, out)
	<-done
	<-done
	return 0
}

func testKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func startHandshakeClient(t *testing.T, sock, mode string, key []byte, attr *syscall.SysProcAttr) *peerProc {
	t.Helper()
	return startPeer(t, peerBinary(t), "hsclient", attr, "SECNET_TEST_SOCK="+sock, "SECNET_TEST_MODE="+mode, "SECNET_TEST_KEY="+hex.EncodeToString(key))
}

// failedRule returns the reason of the failure of the rule named name in
// rej, failing the test when rej has another failure or none.
func failedRule(t *testing.T, rej *RejectError, name string) string {
	t.Helper()
	if len(rej.Failures) != 1 || rej.Failures[0].Rule != name {
		t.Fatalf("rejected with %v, want a failure of %s alone", rej, name)
	}
	return rej.Failures[0].Err.Error()
}

func TestHandshakeRuleValidity(t *testing.T) {
	key := testKey(t)
	hs := Handshake("token", func(context.Context, *SecureConn) error { return nil })
	for _, tc := range []struct {
		name string
		rule Rule
		want string // in Err; "" for a valid rule
	}{
		{"handshake", hs, ""},
		{"sharedsecret", SharedSecret(key), ""},
		{"rotation", SharedSecrets(key, testKey(t)), ""},
		{"short key", SharedSecret(key[:15]), "at least 16"},
		{"no keys", SharedSecrets(), "no keys"},
		{"one short key of two", SharedSecrets(key, []byte("short")), "at least 16"},
		{"no name", Handshake("", func(context.Context, *SecureConn) error { return nil }), "needs a name"},
		{"no function", Handshake("x", nil), "needs a name"},
		{"anyof", AnyOf(UID(0), SharedSecret(key)), "cannot be combined"},
		{"allof", AllOf(UID(0), hs), "cannot be combined"},
		{"not", Not(hs), "cannot be combined"},
		{"nested", AllOf(AnyOf(UID(1), SharedSecret(key))), "cannot be combined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Err()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Err = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if s := SharedSecret(key).String(); s != "sharedsecret(1 key)" || strings.Contains(s, hex.EncodeToString(key[:4])) {
		t.Errorf("String = %q", s)
	}
	if n := SharedSecret(key).Name(); n != "sharedsecret" {
		t.Errorf("Name = %q", n)
	}
	// A handshake rule cannot be checked against a Peer alone: it fails.
	if err := hs.Check(&Peer{}); err == nil || !strings.Contains(err.Error(), "handshake rule") {
		t.Errorf("Check = %v, want an error", err)
	}
	// Dialer.Rules cannot hold one, nor can Require.
	d := Dialer{Rules: []Rule{SharedSecret(key)}}
	if _, err := d.DialSecure(context.Background(), "unix", "/nonexistent"); err == nil || !strings.Contains(err.Error(), "Dialer.Handshake") {
		t.Errorf("Dial with a handshake rule: %v", err)
	}
	rec := httptest.NewRecorder()
	Require(SharedSecret(key))(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "give it to the listener") {
		t.Errorf("Require(SharedSecret): %d %q", rec.Code, rec.Body.String())
	}
}

// The right key passes; what the client sends after the handshake reaches
// the application.
func TestSharedSecretAccepts(t *testing.T) {
	key := testKey(t)
	h := listen(t, Anyone(), SharedSecret(key))
	cl := startHandshakeClient(t, h.path, "prove", key, nil)
	c := h.mustAccept(t)
	if got := cl.line(t); got != "ok pong" {
		t.Fatalf("client: %q", got)
	}
	if p := c.Peer(); p.PID != cl.cmd.Process.Pid {
		t.Errorf("accepted pid %d, want the client %d", p.PID, cl.cmd.Process.Pid)
	}
}

func TestSharedSecretRejects(t *testing.T) {
	key := testKey(t)
	for _, tc := range []struct {
		mode   string
		key    []byte
		client string // what the client prints
		server string // in the reason of the rejection
	}{
		{"prove", testKey(t), "refused (handshake refused: true): dial unix", "matches no accepted key"},
		{"garbage", key, "verdict 1", "malformed answer"},
		{"othernonce", key, fmt.Sprintf("verdict %d", ssWrongMAC), "matches no accepted key"},
		{"short", key, "sent", "short answer: the client sent 10 of 44 bytes"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := listen(t, Anyone(), SharedSecret(key))
			cl := startHandshakeClient(t, h.path, tc.mode, tc.key, nil)
			why := failedRule(t, h.mustReject(t), "sharedsecret")
			if !strings.Contains(why, tc.server) {
				t.Errorf("rejected because %q, want %q", why, tc.server)
			}
			if got := cl.line(t); !strings.HasPrefix(got, tc.client) {
				t.Errorf("client: %q, want %q...", got, tc.client)
			}
			cl.wait(t)
		})
	}
}

// A peer that fails a kernel rule is never challenged, and its client
// learns that it was refused before the handshake.
func TestHandshakeAfterKernelRules(t *testing.T) {
	key := testKey(t)
	var calls atomic.Int32
	count := Handshake("count", func(context.Context, *SecureConn) error { calls.Add(1); return nil })
	h := listen(t, count, UID(os.Geteuid()+1), SharedSecret(key))
	cl := startHandshakeClient(t, h.path, "prove", key, nil)
	rej := h.mustReject(t)
	failedRule(t, rej, "uid")
	if got := strings.Join(rej.NotEvaluated, ", "); got != "count(), sharedsecret(1 key)" {
		t.Errorf("not evaluated: %q, want the handshake rules", got)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handshake ran %d times for a peer that failed a kernel rule", n)
	}
	if got := cl.line(t); !strings.Contains(got, "without sending a challenge") {
		t.Errorf("client: %q", got)
	}
}

// Several handshake rules run in order; bytes they read are consumed, and
// the deadline they ran under is cleared afterwards.
func TestHandshakeOrderAndDeadline(t *testing.T) {
	var order []string
	step := func(name string) Rule {
		return Handshake(name, func(ctx context.Context, c *SecureConn) error {
			order = append(order, name)
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline in ctx")
			}
			b := make([]byte, len(name))
			if _, err := io.ReadFull(c, b); err != nil {
				return err
			}
			if string(b) != name {
				return fmt.Errorf("read %q, want %q", b, name)
			}
			return nil
		})
	}
	srv, cl := unixPair(t)
	cl.Write([]byte("onetwo"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := VerifyContext(ctx, srv, step("one"), Anyone(), step("two"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, ",") != "one,two" {
		t.Errorf("order %v", order)
	}
	// Past the deadline the handshakes ran under, a read still waits for
	// the data that comes after them.
	<-ctx.Done()
	time.Sleep(100 * time.Millisecond)
	cl.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("after the handshakes the application read %q, %v; want \"ping\"", buf, err)
	}
	// A cancelled context stops a handshake that waits for the peer.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	wait := Handshake("wait", func(_ context.Context, c *SecureConn) error {
		_, err := c.Read(make([]byte, 1))
		return err
	})
	_, err = VerifyContext(ctx, srv, wait)
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("handshake with a cancelled context: %v", err)
	}
}

// endingCtx is a context that ends just after runHandshake first looks at
// it, as the listener's verification context does when the deadline
// passes at that moment: the listener then closes the connection.
type endingCtx struct {
	context.Context
	looks atomic.Int32
}

func (c *endingCtx) Deadline() (time.Time, bool) { return time.Now().Add(time.Hour), true }

func (c *endingCtx) Err() error {
	if c.looks.Add(1) == 1 {
		return nil
	}
	return context.DeadlineExceeded
}

// A handshake whose connection the listener closed at the deadline just
// as it began fails for the deadline, not for the closed connection.
func TestHandshakeDeadlineAtStart(t *testing.T) {
	srv, _ := unixPair(t)
	srv.Close()
	ran := false
	fn := func(context.Context, *SecureConn) error { ran = true; return nil }
	err := runHandshake(&endingCtx{Context: context.Background()}, &SecureConn{UnixConn: srv}, "test", fn, false)
	if !errors.Is(err, ErrVerifyTimeout) || !strings.Contains(err.Error(), "the handshake was cut off") {
		t.Errorf("handshake on a connection closed at the deadline: %v, want ErrVerifyTimeout", err)
	}
	if ran {
		t.Error("the handshake ran on a closed connection")
	}
}

// unixPair returns the two ends of a connected Unix socket pair.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// Verify runs the handshake, on a raw connection and on a *SecureConn
// accepted earlier; the server uid is then this process's.
func TestSharedSecretVerify(t *testing.T) {
	key := testKey(t)
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("securecconn=%v", secure), func(t *testing.T) {
			path := filepath.Join(sockDir(t), "s")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			for _, k := range [][]byte{key, testKey(t)} {
				cl := startHandshakeClient(t, path, "prove", k, nil)
				var c net.Conn
				c, err = ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				if secure {
					if c, err = Verify(c, Anyone()); err != nil {
						t.Fatal(err)
					}
				}
				sc, err := Verify(c, SharedSecret(key))
				if string(k) == string(key) {
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if secure && sc != c {
						t.Errorf("Verify of a *SecureConn returned another connection")
					}
					buf := make([]byte, 4)
					io.ReadFull(sc, buf)
					sc.Write([]byte("pong"))
					if got := cl.line(t); got != "ok pong" {
						t.Errorf("client: %q", got)
					}
				} else {
					var rej *RejectError
					if !errors.As(err, &rej) || !strings.Contains(failedRule(t, rej, "sharedsecret"), "no accepted key") {
						t.Errorf("Verify with a wrong key: %v", err)
					}
					if got := cl.line(t); !strings.Contains(got, "refused (handshake refused: true)") {
						t.Errorf("client: %q", got)
					}
				}
				c.Close()
			}
		})
	}
}

// NewListener (a socket from systemd, here from net.Listen) binds the
// answer to the uid of the listening socket's creator.
func TestSharedSecretNewListener(t *testing.T) {
	key := testKey(t)
	old, next := testKey(t), testKey(t)
	inner, err := net.Listen("unix", filepath.Join(sockDir(t), "s"))
	if err != nil {
		t.Fatal(err)
	}
	ln := NewListener(inner, Anyone(), SharedSecrets(old, next))
	defer ln.Close()
	if !ln.v.server.known || ln.v.server.uid != os.Geteuid() {
		t.Errorf("listening socket's uid: %+v, want %d", ln.v.server, os.Geteuid())
	}
	rejected := make(chan *RejectError, 4)
	ln.SetRejected(func(e *RejectError) { rejected <- e })
	accepted := make(chan *SecureConn, 4)
	go func() {
		for {
			c, err := ln.AcceptSecure()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	// Key rotation: both keys are accepted, a third is not.
	for _, k := range [][]byte{old, next, key} {
		cl := startHandshakeClient(t, inner.Addr().String(), "prove", k, nil)
		select {
		case c := <-accepted:
			buf := make([]byte, 4)
			io.ReadFull(c, buf)
			c.Write([]byte("pong"))
			c.Close()
			if string(k) == string(key) {
				t.Errorf("a third key was accepted")
			}
		case rej := <-rejected:
			failedRule(t, rej, "sharedsecret")
			if string(k) != string(key) {
				t.Errorf("a rotated key was rejected: %v", rej)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no verdict in 20s")
		}
		want := "ok pong"
		if string(k) == string(key) {
			want = "refused (handshake refused: true)"
		}
		if got := cl.line(t); !strings.HasPrefix(got, want) {
			t.Errorf("client: %q, want %q", got, want)
		}
	}
}

// A server of another uid serving a socket that this process created, as
// a service does with a socket from systemd: clients see the uid of the
// socket's creator, and the server expects that uid, not its own.
func TestSharedSecretActivatedOtherUID(t *testing.T) {
	requireRoot(t)
	key := testKey(t)
	sock := filepath.Join(sockDir(t), "a")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ul.File()
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	defer f.Close()
	cmd := exec.Command(peerBinary(t))
	cmd.Env = append(os.Environ(), "SECNET_TEST_ROLE=hsactivated", "SECNET_TEST_KEY="+hex.EncodeToString(key))
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4321, Gid: 4321}}
	srv := startCmd(t, cmd)
	f.Close()
	if got := srv.line(t); got != "ready" {
		t.Fatalf("server: %q", got)
	}
	d := Dialer{Rules: []Rule{UID(os.Geteuid())}, Handshake: ProveSharedSecret(key)}
	c, err := d.DialSecure(context.Background(), "unix", sock)
	if err != nil {
		t.Fatalf("dial: %v (server: %q)", err, srv.line(t))
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	if got := srv.line(t); got != "accepted" || string(b) != "ok" {
		t.Errorf("server: %q, client read %q", got, b)
	}
}

// The answer is bound to the server's uid as the client sees it: a
// process of another user that relays the challenge to a client through a
// socket of its own gets an answer the server refuses, and the client an
// error saying so.
func TestSharedSecretRelay(t *testing.T) {
	requireRoot(t)
	key := testKey(t)
	h := listen(t, Anyone(), SharedSecret(key))
	dir := filepath.Join(sockDir(t), "relay")
	if err := os.Mkdir(dir, 0777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0777)
	relayPath := filepath.Join(dir, "r")
	attr := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4321, Gid: 4321}}
	relay := startPeer(t, peerBinary(t), "hsrelay", attr, "SECNET_TEST_SOCK="+h.path, "SECNET_TEST_RELAY="+relayPath)
	if got := relay.line(t); got != "ready" {
		t.Fatalf("relay: %q", got)
	}
	cl := startHandshakeClient(t, relayPath, "prove", key, nil)
	rej := h.mustReject(t)
	if rej.Peer.UID != 4321 {
		t.Errorf("rejected peer uid %d, want the relay's 4321", rej.Peer.UID)
	}
	why := failedRule(t, rej, "sharedsecret")
	if want := fmt.Sprintf("for a server of uid 4321, as the client sees it, but this listening socket belongs to uid %d", os.Geteuid()); !strings.Contains(why, want) {
		t.Errorf("rejected because %q, want %q", why, want)
	}
	got := cl.line(t)
	if !strings.Contains(got, "refused (handshake refused: true)") || !strings.Contains(got, "answered for the server it sees, uid 4321") {
		t.Errorf("client: %q", got)
	}
}

// 1,000 failed handshakes leave no fd or goroutine behind.
func TestHandshakeFailuresLeakNothing(t *testing.T) {
	key := testKey(t)
	var mu sync.Mutex
	rejections := 0
	path := filepath.Join(sockDir(t), "s")
	lc := ListenConfig{Rejected: func(*RejectError) { mu.Lock(); rejections++; mu.Unlock() }}
	ln, err := lc.Listen(context.Background(), "unix", path, Anyone(), SharedSecret(key))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	d := Dialer{Rules: []Rule{Anyone()}, Handshake: ProveSharedSecret(testKey(t))}
	dial := func() {
		_, err := d.DialSecure(context.Background(), "unix", path)
		if !errors.Is(err, ErrHandshakeRefused) {
			t.Fatalf("dial with a wrong key: %v", err)
		}
	}
	dial() // warm up: lazily created runtime state
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	for range 1000 {
		dial()
	}
	reported := func() int { mu.Lock(); defer mu.Unlock(); return rejections }
	for deadline := time.Now().Add(5 * time.Second); reported() < 1001 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := reported(); n != 1001 {
		t.Errorf("%d rejections reported, want 1001", n)
	}
	for fd, target := range openFDs(t) {
		if fds[fd] != target {
			t.Errorf("fd %s (%s) opened during 1000 failed handshakes is still open", fd, target)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > goroutines {
		t.Errorf("goroutines: %d before, %d after 1000 failed handshakes", goroutines, got)
	}
	ln.Close()
	<-done
}

// An HTTP server sees only the connections that passed the handshake;
// the client answers it from http.Transport.DialContext.
func TestSharedSecretHTTP(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(sockDir(t), "s")
	ln, err := Listen("unix", path, Anyone(), SharedSecret(key))
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := PeerFromContext(r.Context())
			fmt.Fprintf(w, "hello uid %d", p.UID)
		}),
		ConnContext: ConnContext,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	defer srv.Close()
	get := func(k []byte) (string, error) {
		d := Dialer{Rules: []Rule{Anyone()}, Handshake: ProveSharedSecret(k)}
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://secnet/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if _, err := get(testKey(t)); !errors.Is(err, ErrHandshakeRefused) {
		t.Errorf("GET with a wrong key: %v", err)
	}
	body, err := get(key)
	if err != nil || body != fmt.Sprintf("hello uid %d", os.Geteuid()) {
		t.Errorf("GET with the key: %q, %v", body, err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("http.Server saw %d connections, want 1 (the one that passed)", n)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := sockDir(t)
	key := testKey(t)
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", key, 0600)
	os.Symlink(good, filepath.Join(dir, "link"))
	for _, tc := range []struct {
		path string
		want string // in the error; "" for success
	}{
		{good, ""},
		{write("ro", key, 0400), ""},
		{filepath.Join(dir, "link"), ""}, // a symlink to a good file, as Kubernetes mounts secrets
		{write("group", key, 0640), "mode 0640 lets its group or others read or write it"},
		{write("other", key, 0604), "mode 0604"},
		{write("gw", key, 0620), "mode 0620"},
		{write("short", key[:15], 0600), "at least 16"},
		{dir, "not a regular file"},
		{filepath.Join(dir, "missing"), "no such file"},
		{ownedBy(t, write("theirs", key, 0600), 1), "owned by uid 1"},
	} {
		got, err := ReadSecretFile(tc.path)
		switch {
		case tc.path == "":
			continue
		case tc.want == "" && (err != nil || string(got) != string(key)):
			t.Errorf("%s: %v", tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
}

// ownedBy gives the file at p to uid, or returns "" (a case to skip)
// when this process cannot, not being root.
func ownedBy(t *testing.T, p string, uid int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return ""
	}
	if err := os.Chown(p, uid, -1); err != nil {
		t.Fatal(err)
	}
	return p
}

// Dialer.VerifyConn answers the handshake on a connection dialed
// elsewhere, as a gRPC transport does.
func TestDialerVerifyConn(t *testing.T) {
	key := testKey(t)
	h := listen(t, Anyone(), SharedSecret(key))
	h.start()
	for _, k := range [][]byte{key, testKey(t)} {
		raw, err := net.Dial("unix", h.path)
		if err != nil {
			t.Fatal(err)
		}
		d := Dialer{Rules: []Rule{SameUser()}, Handshake: ProveSharedSecret(k)}
		sc, err := d.VerifyConn(context.Background(), raw)
		if string(k) == string(key) {
			if err != nil {
				t.Fatalf("VerifyConn: %v", err)
			}
			h.mustAccept(t)
			sc.Write([]byte("ping"))
			buf := make([]byte, 4)
			if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "pong" {
				t.Errorf("after the handshake: %q, %v", buf, err)
			}
		} else {
			if !errors.Is(err, ErrHandshakeRefused) {
				t.Errorf("VerifyConn with a wrong key: %v", err)
			}
			h.mustReject(t)
		}
		raw.Close()
	}
}

// BenchmarkSharedSecret measures a connection cycle (dial, verify, accept,
// close) with and without the shared-secret handshake, client and server
// in this process.
func BenchmarkSharedSecret(b *testing.B) {
	key := testKey(b)
	for _, tc := range []struct {
		name  string
		rules []Rule
		hs    func(context.Context, *SecureConn) error
	}{
		{"uid", []Rule{SameUser()}, nil},
		{"uid+sharedsecret", []Rule{SameUser(), SharedSecret(key)}, ProveSharedSecret(key)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir, err := os.MkdirTemp("", "sn")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			path := filepath.Join(dir, "s")
			ln, err := Listen("unix", path, tc.rules...)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			d := Dialer{Rules: []Rule{Anyone()}, Handshake: tc.hs}
			for b.Loop() {
				c, err := d.DialSecure(context.Background(), "unix", path)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// A FIFO named as a key file is refused at once, not waited on.
func TestReadSecretFileFIFO(t *testing.T) {
	p := filepath.Join(sockDir(t), "fifo")
	if err := syscall.Mkfifo(p, 0600); err != nil {
		t.Skip("mkfifo:", err)
	}
	if _, err := ReadSecretFile(p); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadSecretFile of a FIFO: %v", err)
	}
}

// A client that never answers is rejected at the verification deadline,
// while another client is accepted meanwhile.
func TestSharedSecretSilentClient(t *testing.T) {
	key := testKey(t)
	path := filepath.Join(sockDir(t), "s")
	rejected := make(chan *RejectError, 4)
	lc := ListenConfig{Mode: 0666, VerifyTimeout: 2 * time.Second, Rejected: func(e *RejectError) { rejected <- e }}
	ln, err := lc.Listen(context.Background(), "unix", path, Anyone(), SharedSecret(key))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	silent := startHandshakeClient(t, path, "silent", key, nil)
	if got := silent.line(t); got != "connected" {
		t.Fatalf("silent client: %q", got)
	}
	good := startHandshakeClient(t, path, "prove", key, nil)
	c, err := ln.AcceptSecure()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case rej := <-rejected:
		t.Fatalf("a rejection came before the good client was accepted: %v", rej)
	default:
	}
	if p := c.Peer(); p.PID != good.cmd.Process.Pid {
		t.Fatalf("accepted pid %d, want the good client %d", p.PID, good.cmd.Process.Pid)
	}
	buf := make([]byte, 4)
	io.ReadFull(c, buf)
	c.Write([]byte("pong"))
	if got := good.line(t); got != "ok pong" {
		t.Errorf("good client: %q", got)
	}
	select {
	case rej := <-rejected:
		if rej.Peer.PID != silent.cmd.Process.Pid || !errors.Is(rej, ErrVerifyTimeout) {
			t.Errorf("rejection %v, want the silent client's with ErrVerifyTimeout", rej)
		}
		if !strings.Contains(rej.Error(), "sharedsecret: "+ErrVerifyTimeout.Error()+": the handshake was cut off") {
			t.Errorf("rejection %q does not say that the handshake ran out of time", rej)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the silent client was not rejected within 20s")
	}
}

// Handshakes that derive contexts from ctx and are cut off at the
// deadline, many times over: the listener's reused context must look done
// to the context package for as long as it calls back (a context that
// turned back to not done made it panic).
func TestHandshakeDeadlineStress(t *testing.T) {
	path := filepath.Join(sockDir(t), "s")
	var rejected atomic.Int32
	lc := ListenConfig{VerifyTimeout: 20 * time.Millisecond, Workers: 4, WorkersPerUID: 4,
		Rejected: func(*RejectError) { rejected.Add(1) }}
	hs := Handshake("wait", func(ctx context.Context, c *SecureConn) error {
		ctx2, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(ctx2, func() {})
		defer stop()
		_, err := c.Read(make([]byte, 1))
		return err
	})
	ln, err := lc.Listen(context.Background(), "unix", path, Anyone(), hs)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	const n = 200
	for range n {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for deadline := time.Now().Add(20 * time.Second); rejected.Load() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := rejected.Load(); got != n {
		t.Errorf("%d of %d silent peers rejected", got, n)
	}
}

// A client whose server never sends a challenge gives up at its deadline,
// saying what it was waiting for.
func TestProveSharedSecretServerSilent(t *testing.T) {
	path := filepath.Join(sockDir(t), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			c.Read(make([]byte, 1)) // never writes
		}
	}()
	d := Dialer{Rules: []Rule{Anyone()}, Handshake: ProveSharedSecret(testKey(t)), Timeout: 200 * time.Millisecond}
	_, err = d.DialSecure(context.Background(), "unix", path)
	if !errors.Is(err, ErrVerifyTimeout) || !strings.Contains(err.Error(), "reading the challenge (0 of 40 bytes came)") {
		t.Errorf("dial of a silent server: %v", err)
	}
}

// checkAnswer refuses an answer of another version or with reserved bytes
// set even when its MAC is right, an answer whose uid was changed after
// the MAC was made, and a right answer for a server of another uid.
func TestCheckAnswer(t *testing.T) {
	key, other := testKey(t), testKey(t)
	nonce := testKey(t)
	answer := func(key []byte, uid uint32, edit func(a []byte)) []byte {
		a := make([]byte, ssAnswer)
		copy(a, ssAnswerMagic[:])
		a[4] = ssVersion
		a[8], a[9], a[10], a[11] = byte(uid>>24), byte(uid>>16), byte(uid>>8), byte(uid)
		copy(a[12:], ssMAC(key, nonce, uid))
		if edit != nil {
			edit(a)
		}
		return a
	}
	for _, tc := range []struct {
		name string
		ans  []byte
		code byte
	}{
		{"right", answer(key, 7, nil), ssAccepted},
		{"second key", answer(other, 7, nil), ssAccepted},
		{"version 2", answer(key, 7, func(a []byte) { a[4] = 2 }), ssMalformed},
		{"reserved byte", answer(key, 7, func(a []byte) { a[6] = 1 }), ssMalformed},
		{"magic", answer(key, 7, func(a []byte) { a[0] = 's' }), ssMalformed},
		{"uid changed", answer(key, 8, func(a []byte) { a[11] = 7 }), ssWrongMAC},
		{"another nonce", answer(key, 7, func(a []byte) { a[12] ^= 1 }), ssWrongMAC},
		{"another key", answer(testKey(t), 7, nil), ssWrongMAC},
		{"another server", answer(key, 8, nil), ssWrongUID},
	} {
		code, err := checkAnswer([][]byte{key, other}, nonce, tc.ans, []uint32{7, 1007})
		if code != tc.code || (err == nil) != (tc.code == ssAccepted) {
			t.Errorf("%s: verdict %d (%v), want %d", tc.name, code, err, tc.code)
		}
	}
}
