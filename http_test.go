package secnet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runHTTPClient is the "httpclient" role: it sends one request, given as
// "METHOD /path" in mode, to the HTTP server on sock through a Dialer that
// requires the server to run as root, and prints the status code and the
// body on one line each.
func runHTTPClient(sock, mode string) int {
	method, path, _ := strings.Cut(mode, " ")
	c := unixHTTPClient(sock, UID(0))
	req, err := http.NewRequest(method, "http://secnet"+path, nil)
	if err != nil {
		fmt.Println("request:", err)
		return 2
	}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Println("do:", err)
		return 2
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode)
	fmt.Println(strings.TrimSpace(string(body)))
	return 0
}

// unixHTTPClient returns an http.Client whose connections go to the Unix
// socket sock, to a server that passes rules.
func unixHTTPClient(sock string, rules ...Rule) *http.Client {
	d := &Dialer{Rules: rules, Timeout: 10 * time.Second}
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", sock)
			},
		},
	}
}

// testHTTPClient is unixHTTPClient for a test: the connections it made
// are closed when the test ends, so that no descriptor is left for the
// transport to close later, while another test counts them.
func testHTTPClient(t *testing.T, sock string, tlsConfig *tls.Config, rules ...Rule) *http.Client {
	d := &Dialer{Rules: rules, Timeout: 10 * time.Second}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := d.DialContext(ctx, "unix", sock)
				if err == nil {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
				return c, err
			},
			TLSClientConfig: tlsConfig,
		},
	}
}

// whoami answers with the identity of the client, as PeerFromContext
// gives it.
func whoami(w http.ResponseWriter, r *http.Request) {
	p, ok := PeerFromContext(r.Context())
	if !ok {
		http.Error(w, "no peer", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "pid=%d uid=%d program=%s\n", p.PID, p.UID, p.Program)
}

// adminOnly authorises per request: anyone may GET, only uid 0 may POST.
func adminOnly(w http.ResponseWriter, r *http.Request) {
	p, ok := PeerFromContext(r.Context())
	if !ok || (r.Method != http.MethodGet && p.UID != 0) {
		http.Error(w, fmt.Sprintf("only root may %s here, not uid %d", r.Method, p.UID), http.StatusForbidden)
		return
	}
	fmt.Fprintln(w, "done")
}

// serveHTTP serves h on a new verified listener (mode 0666, so that other
// users can connect) with the rules, with ConnContext set when
// connContext is true. It returns the socket path.
func serveHTTP(t *testing.T, h http.Handler, connContext bool, tlsConfig *tls.Config, rules ...Rule) string {
	t.Helper()
	sock := filepath.Join(sockDir(t), "h")
	lc := ListenConfig{Mode: 0666}
	ln, err := lc.Listen(context.Background(), "unix", sock, rules...)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	if connContext {
		srv.ConnContext = ConnContext
	}
	done := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			done <- srv.ServeTLS(ln, "", "")
		} else {
			done <- srv.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

func testMux(t *testing.T) *http.ServeMux {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", whoami)
	mux.HandleFunc("/admin", adminOnly)
	mux.Handle("/self-only", Require(UID(os.Getuid()), Program(mustExecutable(t)))(ok))
	if curl, err := exec.LookPath("curl"); err == nil {
		mux.Handle("/curl-only", Require(Program(curl))(ok))
	}
	return mux
}

// get sends a request with c and returns the status and the body.
func get(t *testing.T, c *http.Client, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://secnet"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func TestHTTPClientOverDialer(t *testing.T) {
	exe := mustExecutable(t)
	sock := serveHTTP(t, testMux(t), true, nil, Anyone())
	c := testHTTPClient(t, sock, nil, UID(os.Getuid()), Program(exe))

	code, body := get(t, c, "GET", "/whoami")
	want := fmt.Sprintf("pid=%d uid=%d program=%s", os.Getpid(), os.Getuid(), exe)
	if code != 200 || body != want {
		t.Errorf("GET /whoami = %d %q, want 200 %q", code, body, want)
	}
	// The listener read only the credentials; Require reads the program
	// on demand.
	if code, body := get(t, c, "GET", "/self-only"); code != 200 || body != "ok" {
		t.Errorf("GET /self-only = %d %q, want 200 ok", code, body)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		code, body := get(t, c, "GET", "/curl-only")
		if code != 403 || !strings.Contains(body, "program: ") || !strings.Contains(body, "pid="+strconv.Itoa(os.Getpid())) {
			t.Errorf("GET /curl-only from the test = %d %q, want 403 naming the program rule", code, body)
		}
	}

	// The client refuses a server that fails its rules.
	bad := testHTTPClient(t, sock, nil, UID(os.Getuid()+4242))
	_, err := bad.Get("http://secnet/whoami")
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Failures[0].Rule != "uid" || rej.Peer.PID != os.Getpid() {
		t.Errorf("GET from a client whose rules the server fails: %v, want a *RejectError naming uid", err)
	}
}

func TestHTTPCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (apt-get install curl)")
	}
	realCurl, err := filepath.EvalSymlinks(curl)
	if err != nil {
		t.Fatal(err)
	}
	sock := serveHTTP(t, testMux(t), true, nil, Anyone())
	run := func(t *testing.T, attr *syscall.SysProcAttr, args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(curl, append([]string{"-sS", "--max-time", "20", "--unix-socket", sock,
			"-w", "\n%{http_code}"}, args...)...)
		cmd.SysProcAttr = attr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		// The body, then the status code on the last line.
		s := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(s, '\n')
		n, _ := strconv.Atoi(s[i+1:])
		return n, strings.TrimSpace(s[:max(i, 0)])
	}

	code, body := run(t, nil, "http://secnet/whoami")
	if code != 200 || !strings.HasPrefix(body, "pid=") ||
		!strings.HasSuffix(body, fmt.Sprintf("uid=%d program=%s", os.Getuid(), realCurl)) ||
		strings.HasPrefix(body, fmt.Sprintf("pid=%d ", os.Getpid())) {
		t.Errorf("curl /whoami = %d %q, want 200 with curl's pid, uid %d and program %s", code, body, os.Getuid(), realCurl)
	}
	if code, body := run(t, nil, "http://secnet/curl-only"); code != 200 || body != "ok" {
		t.Errorf("curl /curl-only = %d %q, want 200 ok", code, body)
	}
	if code, body := run(t, nil, "http://secnet/self-only"); code != 403 || !strings.Contains(body, "program: ") {
		t.Errorf("curl /self-only = %d %q, want 403 naming the program rule", code, body)
	}

	t.Run("OtherUser", func(t *testing.T) {
		requireRoot(t)
		nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}}
		code, body := run(t, nobody, "-X", "POST", "http://secnet/admin")
		if code != 403 || !strings.Contains(body, "not uid 1") {
			t.Errorf("curl as uid 1 POST /admin = %d %q, want 403", code, body)
		}
		if code, body := run(t, nobody, "http://secnet/admin"); code != 200 {
			t.Errorf("curl as uid 1 GET /admin = %d %q, want 200", code, body)
		}
		if code, body := run(t, nil, "-X", "POST", "http://secnet/admin"); code != 200 || body != "done" {
			t.Errorf("curl as root POST /admin = %d %q, want 200 done", code, body)
		}
	})
}

// TestHTTPPerRequestAuthorisation runs the client as another user (the
// test binary in the "httpclient" role, as uid 1): the same server lets
// root POST and answers uid 1 with 403.
func TestHTTPPerRequestAuthorisation(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	mux := testMux(t)
	mux.Handle("/root-only", Require(UID(0), GID(0))(http.HandlerFunc(adminOnly)))
	sock := serveHTTP(t, mux, true, nil, Anyone())
	request := func(attr *syscall.SysProcAttr, mode string) (string, string) {
		cl := startPeer(t, bin, "httpclient", attr, "SECNET_TEST_SOCK="+sock, "SECNET_TEST_MODE="+mode)
		code := cl.line(t)
		body := cl.line(t)
		cl.wait(t)
		return code, body
	}
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}}

	if code, body := request(nobody, "POST /admin"); code != "403" || !strings.Contains(body, "not uid 1") {
		t.Errorf("uid 1 POST /admin = %s %q, want 403", code, body)
	}
	if code, body := request(nobody, "GET /whoami"); code != "200" || !strings.Contains(body, " uid=1 ") {
		t.Errorf("uid 1 GET /whoami = %s %q, want 200 with uid=1", code, body)
	}
	code, body := request(nobody, "GET /root-only")
	if code != "403" || !strings.Contains(body, "uid: peer uid 1 is not 0; gid: peer primary gid 1 is not 0") {
		t.Errorf("uid 1 GET /root-only = %s %q, want 403 naming the uid and gid rules", code, body)
	}
	if code, body := request(nil, "POST /admin"); code != "200" || body != "done" {
		t.Errorf("root POST /admin = %s %q, want 200 done", code, body)
	}
}

func TestRequireWithoutIdentity(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux := http.NewServeMux()
	mux.Handle("/guarded", Require(Anyone())(ok))
	mux.Handle("/invalid", Require()(ok))
	mux.HandleFunc("/whoami", whoami)
	sock := serveHTTP(t, mux, false, nil, Anyone())
	c := testHTTPClient(t, sock, nil, Anyone())
	if code, body := get(t, c, "GET", "/guarded"); code != 403 || !strings.Contains(body, "ConnContext") {
		t.Errorf("GET /guarded without ConnContext = %d %q, want 403 that names ConnContext", code, body)
	}
	if code, body := get(t, c, "GET", "/invalid"); code != 500 || !strings.Contains(body, "no rules") {
		t.Errorf("GET /invalid = %d %q, want 500 about the missing rules", code, body)
	}
	if code, _ := get(t, c, "GET", "/whoami"); code != 500 {
		t.Errorf("PeerFromContext found a peer without ConnContext (status %d)", code)
	}
}

// TestHTTPSOverUnix serves HTTPS: ConnContext is handed the *tls.Conn and
// finds the verified connection through its NetConn method.
func TestHTTPSOverUnix(t *testing.T) {
	cert := selfSigned(t)
	sock := serveHTTP(t, testMux(t), true, &tls.Config{Certificates: []tls.Certificate{cert}}, Anyone())
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	c := testHTTPClient(t, sock, &tls.Config{RootCAs: pool, ServerName: "secnet.test"}, SameUser())
	resp, err := c.Get("https://secnet.test/whoami")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf("pid=%d uid=%d", os.Getpid(), os.Getuid())
	if resp.StatusCode != 200 || resp.TLS == nil || !strings.HasPrefix(string(body), want) {
		t.Errorf("GET over TLS = %d %q (tls %v), want 200 %q", resp.StatusCode, body, resp.TLS != nil, want)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"secnet.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// embedsConn and embedsSecure are wrappers that expose the inner
// connection only by embedding it.
type embedsConn struct{ net.Conn }
type embedsSecure struct{ *SecureConn }

func TestPeerOfWrappers(t *testing.T) {
	h := listen(t, Anyone())
	cl, err := net.Dial("unix", h.path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sc := h.mustAccept(t)
	for _, tc := range []struct {
		name string
		c    net.Conn
		ok   bool
	}{
		{"SecureConn", sc, true},
		{"tls.Conn", tls.Server(sc, &tls.Config{}), true},
		{"embedded net.Conn", embedsConn{sc}, true},
		{"pointer to embedded net.Conn", &embedsConn{sc}, true},
		{"embedded SecureConn", embedsSecure{sc}, true},
		{"tls over embedded", embedsConn{tls.Client(&embedsConn{sc}, &tls.Config{})}, true},
		{"plain UnixConn", sc.UnixConn, false},
		{"client side, not verified", cl, false},
		{"nil", nil, false},
		{"embedded nil", embedsConn{}, false},
		{"embedded nil SecureConn", embedsSecure{}, false},
		{"wrapper around unverified", tls.Server(cl, &tls.Config{}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := PeerOf(tc.c)
			if ok != tc.ok {
				t.Fatalf("PeerOf ok = %v, want %v", ok, tc.ok)
			}
			if ok && (p.PID != os.Getpid() || p.Program == "") {
				t.Errorf("PeerOf = %v, want pid %d with its program read", &p, os.Getpid())
			}
			ctx := ConnContext(context.Background(), tc.c)
			if _, ok := PeerFromContext(ctx); ok != tc.ok {
				t.Errorf("PeerFromContext after ConnContext ok = %v, want %v", ok, tc.ok)
			}
		})
	}
}
