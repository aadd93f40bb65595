package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/policy"
)

// startHTTPProxy serves the HTTP proxy with routes in the test process
// on a socket every user may connect to (the routes decide), in front
// of upstream. The returned proc holds the JSON log in its stderr.
func startHTTPProxy(t testing.TB, routes []policy.Route, prefix, upstream string, rules ...secnet.Rule) (*proc, string) {
	t.Helper()
	if rules == nil {
		rules = []secnet.Rule{secnet.Anyone()}
	}
	rt, err := policy.NewRouter(routes, prefix)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir(t), "h.sock")
	lc := secnet.ListenConfig{Mode: 0o666}
	ln, err := lc.Listen(context.Background(), "unix", sock, rules...)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{done: make(chan struct{})}
	log := slog.New(slog.NewJSONHandler(&p.stderr, nil))
	pol := &httpPolicy{router: rt}
	h := newHTTPProxy(func() *httpPolicy { return pol }, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", upstream)
	}, log, 0)
	go func() {
		for {
			c, err := ln.AcceptSecure()
			if err != nil {
				return
			}
			go h.serveConn(c, pol)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		h.shutdown()
		if t.Failed() {
			t.Logf("proxy log:\n%s", p.stderr.String())
		}
	})
	return p, sock
}

// routesUpstream is an HTTP server on a Unix socket with the kinds of
// endpoint the Docker API has: plain, request bodies, streams flushed as
// they come (each line waits for gate), and connections taken over with
// 101 (Upgrade: tcp) or 200 (Docker's raw stream) that read the client's
// stream to its end, then answer with what they read and close.
func routesUpstream(t *testing.T) (path string, gate chan struct{}) {
	t.Helper()
	path = filepath.Join(sockDir(t), "up.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	gate = make(chan struct{})
	gone := make(chan struct{}) // closed when the test ends
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from upstream\n") })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for _, line := range []string{"one\n", "two\n"} {
			io.WriteString(w, line)
			w.(http.Flusher).Flush()
			select {
			case <-gate:
			case <-time.After(20 * time.Second):
				return
			}
		}
	})
	mux.HandleFunc("POST /attach", func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		if upgradeType(r.Header) == "tcp" {
			brw.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		} else {
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
		}
		brw.WriteString("ready\n")
		brw.Flush()
		in, _ := io.ReadAll(brw) // to the client's half-close
		fmt.Fprintf(c, "got %d bytes: %s", len(in), in)
	})
	uri := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RequestURI) }
	mux.HandleFunc("/uri/", uri)
	mux.HandleFunc("/v1.41/uri/", uri)
	mux.HandleFunc("POST /silent", func(w http.ResponseWriter, r *http.Request) {
		// Switches protocols, then neither writes nor closes.
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		brw.Flush()
		<-gone
	})
	mux.HandleFunc("POST /early", func(w http.ResponseWriter, r *http.Request) {
		// Answers at once, reads none of the body, keeps the connection.
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 2\r\n\r\nno")
		brw.Flush()
		<-gone
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { close(gone); srv.Close() })
	return path, gate
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}, Timeout: 20 * time.Second}
}

func testRoutes() []policy.Route {
	return []policy.Route{
		{Name: "read", Match: []string{"GET /hello", "GET /stream"}},
		{Name: "root", Match: []string{"/"}, Rules: []secnet.Rule{secnet.UID(0)}},
	}
}

// TestHTTPProxyRoutesPerPeer: one proxy, two users; the route decides
// per request, also on a kept-alive connection, and a refusal is a 403
// with a JSON message that names the route and the failed rule.
func TestHTTPProxyRoutesPerPeer(t *testing.T) {
	requireRoot(t)
	up, _ := routesUpstream(t)
	p, sock := startHTTPProxy(t, testRoutes(), "", up)
	other := &syscall.Credential{Uid: 1, Gid: 1}

	// root: everything.
	if out, st := curl(t, sock, "http://x/hello", nil); st != 0 || out != "hello from upstream\n" {
		t.Fatalf("root GET /hello: %q, status %d", out, st)
	}
	if out, st := curl(t, sock, "http://x/echo", nil, "--data-binary", "body"); st != 0 || out != "body" {
		t.Fatalf("root POST /echo: %q, status %d", out, st)
	}
	// uid 1: POST /echo, then GET /hello on the same connection.
	const code = "%{http_code} %{num_connects}\n"
	out, st := curl(t, sock, "http://x/hello", other, "-w", code, "--data-binary", "body", "http://x/echo",
		"--next", "-sS", "--unix-socket", sock, "-w", code)
	if st != 0 {
		t.Fatalf("curl as uid 1: status %d, %q", st, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || lines[1] != "403 1" || lines[2] != "hello from upstream" || lines[3] != "200 0" {
		t.Fatalf("uid 1 POST /echo, GET /hello on one connection: %q", out)
	}
	var refusal struct{ Message string }
	if err := json.Unmarshal([]byte(lines[0]), &refusal); err != nil {
		t.Fatalf("refusal body %q: %v", lines[0], err)
	}
	for _, want := range []string{`POST "/echo" is refused`, `route "root" (pattern "/")`, "uid=1", "uid: peer uid 1 is not 0"} {
		if !strings.Contains(refusal.Message, want) {
			t.Errorf("refusal message %q does not say %q", refusal.Message, want)
		}
	}
	// The audit: one line per request (written after the response).
	p.waitLog(t, "request", 4)
	recs := p.logs("request")
	if len(recs) != 4 {
		t.Fatalf("%d request records, want 4", len(recs))
	}
	refused, allowed := recs[2], recs[3]
	if allowed["decision"] != "allowed" || allowed["route"] != "read" || allowed["pattern"] != "GET /hello" || allowed["status"] != float64(200) ||
		allowed["bytes_out"] != float64(len("hello from upstream\n")) || allowed.peer()["uid"] != float64(1) {
		t.Errorf("audit of uid 1 GET /hello: %v", allowed)
	}
	if refused["decision"] != "refused" || refused["route"] != "root" || refused["status"] != float64(403) || refused["method"] != "POST" ||
		refused["path"] != "/echo" || !strings.Contains(refused["reason"].(string), "uid: peer uid 1 is not 0") ||
		refused.peer()["pid"] != allowed.peer()["pid"] {
		t.Errorf("audit of uid 1 POST /echo: %v", refused)
	}
	if recs[1]["bytes_in"] != float64(4) || recs[1]["bytes_out"] != float64(4) {
		t.Errorf("audit of root POST /echo: %v, want 4 bytes each way", recs[1])
	}
}

func TestHTTPProxyNoRoute(t *testing.T) {
	up, _ := routesUpstream(t)
	p, sock := startHTTPProxy(t, testRoutes()[:1], "", up)
	res, err := unixClient(sock).Post("http://x/echo", "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 403 || res.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(string(b), `"message":"secnet: POST \"/echo\" is refused: no route matches POST \"/echo\""`) {
		t.Fatalf("POST /echo with no route: %d %q", res.StatusCode, b)
	}
	rec := p.waitLog(t, "request", 1)
	if rec["decision"] != "refused" || rec["route"] != "" {
		t.Errorf("audit: %v", rec)
	}
}

// TestHTTPProxyStreams: a streamed response reaches the client line by
// line, before the upstream writes the next one.
func TestHTTPProxyStreams(t *testing.T) {
	up, gate := routesUpstream(t)
	_, sock := startHTTPProxy(t, testRoutes(), "", up)
	res, err := unixClient(sock).Get("http://x/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := bufio.NewReader(res.Body)
	for _, want := range []string{"one\n", "two\n"} {
		line, err := r.ReadString('\n') // the upstream waits for gate after each line
		if err != nil || line != want {
			t.Fatalf("stream: %q, %v; want %q", line, err, want)
		}
		gate <- struct{}{}
	}
}

// TestHTTPProxyTakeover: connections the upstream takes over, with 101
// (Upgrade: tcp) and with Docker's 200 raw stream, carry the client's
// stream to its half-close, and the answer the upstream writes after it.
// The client writes its stream right behind the request, before the
// response, so that the proxy must pass on what its server read ahead.
func TestHTTPProxyTakeover(t *testing.T) {
	up, _ := routesUpstream(t)
	p, sock := startHTTPProxy(t, testRoutes(), "", up)
	stdin := make([]byte, 1<<20)
	rand.Read(stdin)
	for i, tc := range []struct{ name, header, status string }{
		{"upgrade", "Connection: Upgrade\r\nUpgrade: tcp\r\n", "101"},
		{"raw-stream", "", "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, sock)
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			go func() {
				c.Write([]byte("POST /attach HTTP/1.1\r\nHost: x\r\n" + tc.header + "\r\n"))
				c.Write(stdin)
				c.CloseWrite()
			}()
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(res.Status, tc.status) || res.Header.Get("Content-Type") != "application/vnd.docker.raw-stream" {
				t.Fatalf("response %q %v", res.Status, res.Header)
			}
			rest, err := io.ReadAll(br) // the proxy passes the upstream's close on
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte(fmt.Sprintf("ready\ngot %d bytes: ", len(stdin))), stdin...)
			if !bytes.Equal(rest, want) {
				t.Fatalf("got %d bytes back (%.40q), want %d", len(rest), rest, len(want))
			}
			rec := p.waitLog(t, "request", i+1)
			if rec["decision"] != "allowed" || rec["status"].(float64) != map[string]float64{"101": 101, "200": 200}[tc.status] ||
				rec["bytes_in"] != float64(len(stdin)) || rec["bytes_out"].(float64) < float64(len(want)) {
				t.Errorf("audit: %v", rec)
			}
		})
	}
}

func TestHTTPProxyBodiesAndUpstreamDown(t *testing.T) {
	up, _ := routesUpstream(t)
	routes := []policy.Route{{Name: "all", Match: []string{"/"}}}
	_, sock := startHTTPProxy(t, routes, "", up)
	body := make([]byte, 8<<20)
	rand.Read(body)
	// Chunked, as docker cp and docker build send their archives.
	res, err := unixClient(sock).Post("http://x/echo", "application/x-tar", io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("echo: %d bytes, want %d", len(got), len(body))
	}

	_, sock = startHTTPProxy(t, routes, "", filepath.Join(sockDir(t), "absent.sock"))
	res, err = unixClient(sock).Get("http://x/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), `"message":"secnet: the upstream failed: `) {
		t.Fatalf("upstream down: %d %q", res.StatusCode, b)
	}
}

// TestHTTPProxyReload: secnet proxy with routes; after SIGHUP the next
// request of a connection already open is decided by the new routes.
func TestHTTPProxyReload(t *testing.T) {
	up, _ := routesUpstream(t)
	const before = "[[rule]]\nanyone = true\n\n[[route]]\nname = \"hello\"\nmatch = \"GET /hello\"\n"
	p, sock := startProxy(t, up, before)
	polFile := p.cmd.Args[slices.Index(p.cmd.Args, "--policy")+1]
	client := unixClient(sock)
	get := func(path string) int {
		t.Helper()
		res, err := client.Get("http://x" + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if get("/hello") != 200 || get("/echo") != 403 {
		t.Fatal("before the reload: want GET /hello allowed, GET /echo refused")
	}
	after := "[[rule]]\nanyone = true\n\n[[route]]\nname = \"all\"\nmatch = \"/\"\n"
	if err := os.WriteFile(polFile, []byte(after), 0o644); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	if rec := p.waitLog(t, "policy reloaded", 1); fmt.Sprint(rec["http_routes"]) != "[all]" {
		t.Errorf("reload log: %v, want http_routes [all]", rec)
	}
	if get("/echo") != 200 {
		t.Fatal("after the reload: GET /echo refused")
	}
	p.waitLog(t, "request", 3) // written after the response
	recs := p.logs("request")
	if len(p.logs("allowed")) != 1 || len(recs) != 3 || recs[2]["route"] != "all" || recs[2].peer()["pid"] != recs[0].peer()["pid"] {
		t.Errorf("want three requests on one connection, the last decided by route all: %v", recs)
	}
}

// TestHTTPProxyIdleTimeout: with routes, --idle-timeout closes a
// kept-alive connection that sends no next request.
func TestHTTPProxyIdleTimeout(t *testing.T) {
	up, _ := routesUpstream(t)
	_, sock := startProxy(t, up, "[[rule]]\nanyone = true\n\n[[route]]\nname = \"all\"\nmatch = \"/\"\n", "--idle-timeout", "200ms")
	c := dial(t, sock)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 || res.Close {
		t.Fatalf("response %v, %v; want 200 on a kept-alive connection", res, err)
	}
	io.Copy(io.Discard, res.Body)
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the response: read %d, %v; want the proxy to close the idle connection", n, err)
	}
}

// TestHTTPProxyEarlyAnswer: an upstream that answers before it reads the
// request's body (and then reads nothing) does not hang the request.
func TestHTTPProxyEarlyAnswer(t *testing.T) {
	up, _ := routesUpstream(t)
	_, sock := startHTTPProxy(t, []policy.Route{{Name: "all", Match: []string{"/"}}}, "", up)
	body := make([]byte, 16<<20) // more than the socket buffers hold
	res, err := unixClient(sock).Post("http://x/early", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /early: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "no" {
		t.Fatalf("POST /early: %d %q, want the upstream's 413", res.StatusCode, b)
	}
}

// TestHTTPProxyPaths: what the upstream receives is the request target
// that was matched, and paths that could be read two ways are refused
// before any route is consulted.
func TestHTTPProxyPaths(t *testing.T) {
	up, _ := routesUpstream(t)
	routes := []policy.Route{{Name: "uri", Match: []string{"GET /uri/"}}}
	_, sock := startHTTPProxy(t, routes, "/v{version}", up)
	for target, want := range map[string]string{
		"/uri/a%20b?x=1&y=%2F": "200 /uri/a%20b?x=1&y=%2F",
		"/v1.41/uri/c":         "200 /v1.41/uri/c",
		"/uri/%7Euser":         "200 /uri/%7Euser",
		"/uri/../uri/x":        "403 the path is not clean",
		"/uri//x":              "403 the path is not clean",
		"/v1.41/x/%2e%2e/uri/": "403 the path is not clean",
		"/uri/a%2Fb":           "403 the path holds an encoded slash",
		"/other":               `403 no route matches GET \"/other\"`,
		"/v1.41/v1.40/uri/x":   `403 no route matches GET \"/v1.40/uri/x\"`,
		"/uri/x%00y":           "403 the path holds control characters",
	} {
		out, st := curl(t, sock, "http://x"+target, nil, "--path-as-is", "-w", "\n%{http_code}")
		i := strings.LastIndexByte(out, '\n')
		body, got := out[:max(i, 0)], out[i+1:]
		code, text, _ := strings.Cut(want, " ")
		if st != 0 || got != code || !strings.Contains(body, text) {
			t.Errorf("GET %s: status %s, body %q (curl %d); want %s", target, got, body, st, want)
		}
	}
}

// TestHTTPProxyStreamIsNoTunnel: a response that carries a Docker stream
// content type but is an ordinary HTTP response (chunked, as the daemon
// sends docker logs) leaves the connection HTTP, so that what the client
// sends next is a request of its own, decided by the routes; it is not
// passed to the upstream's connection, where the upstream's server would
// read it as its next request (a refused POST smuggled behind an allowed
// GET).
func TestHTTPProxyStreamIsNoTunnel(t *testing.T) {
	path := filepath.Join(sockDir(t), "up.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	created := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /logs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "log line\n")
		w.(http.Flusher).Flush()
	})
	mux.HandleFunc("POST /create", func(w http.ResponseWriter, r *http.Request) {
		created <- struct{}{}
		io.WriteString(w, "created\n")
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	_, sock := startHTTPProxy(t, []policy.Route{{Name: "logs", Match: []string{"GET /logs"}}}, "", path)
	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /logs HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /logs: %v, %v", res, err)
	}
	if b, err := io.ReadAll(res.Body); err != nil || string(b) != "log line\n" {
		t.Fatalf("GET /logs body %q, %v", b, err)
	}
	io.WriteString(c, "POST /create HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("POST /create behind GET /logs: %v; want the proxy's 403", err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(string(b), `no route matches POST \"/create\"`) {
		t.Errorf("POST /create behind GET /logs: %d %q; want 403, no route", res.StatusCode, b)
	}
	select {
	case <-created:
		t.Error("the upstream served POST /create, which no route allows")
	default:
	}
}

// TestHTTPProxyKeepsUpstreamConnection: the requests of one kept-alive
// client connection go over one upstream connection, for responses with
// a length and chunked ones alike; a new upstream connection per request
// would cost the upstream an accept and a connection's setup each time.
func TestHTTPProxyKeepsUpstreamConnection(t *testing.T) {
	path := filepath.Join(sockDir(t), "up.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sized", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "OK")
	})
	mux.HandleFunc("GET /chunked", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "one")
		w.(http.Flusher).Flush()
		io.WriteString(w, "two")
	})
	srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	_, sock := startHTTPProxy(t, []policy.Route{{Name: "all", Match: []string{"/"}}}, "", path)
	client := unixClient(sock)
	for i := range 20 {
		p := []string{"/sized", "/chunked"}[i%2]
		res, err := client.Get("http://x" + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || len(b) == 0 {
			t.Fatalf("GET %s: %d %q", p, res.StatusCode, b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("20 requests of one client connection took %d upstream connections, want 1", conns)
	}
}

// TestHTTPProxyReloadRechecksRules: after a reload, the next request of
// a kept-alive connection is checked against the new policy's [[rule]]
// tables too, not only its routes: a client the new rules shut out gets
// a 403 on the connection it kept open, and is let in again by a reload
// that lets it in.
func TestHTTPProxyReloadRechecksRules(t *testing.T) {
	up, _ := routesUpstream(t)
	const routes = "\n[[route]]\nname = \"all\"\nmatch = \"/\"\n"
	self := os.Getuid()
	p, sock := startProxy(t, up, uidPolicy(self)+routes)
	polFile := p.cmd.Args[slices.Index(p.cmd.Args, "--policy")+1]
	client := unixClient(sock)
	get := func() (int, string) {
		t.Helper()
		res, err := client.Get("http://x/hello")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b)
	}
	reload := func(src string, n int) {
		t.Helper()
		if err := os.WriteFile(polFile, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		p.cmd.Process.Signal(syscall.SIGHUP)
		p.waitLog(t, "policy reloaded", n)
	}
	if st, body := get(); st != 200 {
		t.Fatalf("before the reload: %d %q", st, body)
	}
	reload(uidPolicy(self+4242)+routes, 1)
	st, body := get()
	if st != 403 || !strings.Contains(body, "since the policy was reloaded") || !strings.Contains(body, fmt.Sprintf("is not %d", self+4242)) {
		t.Errorf("after a reload that shuts this client out: %d %q; want 403 naming the uid rule", st, body)
	}
	reload(uidPolicy(self)+routes, 2)
	if st, body := get(); st != 200 {
		t.Errorf("after a reload that lets this client in again: %d %q", st, body)
	}
	p.waitLog(t, "request", 3)
	if n := len(p.logs("allowed")); n != 1 {
		t.Errorf("%d connections, want the three requests on one", n)
	}
	if rec := p.logs("request")[1]; rec["decision"] != "refused" || rec["route"] != "" {
		t.Errorf("audit of the refused request: %v", rec)
	}
}

// TestHTTPProxyUpgradedHangup: a client that closes an upgraded
// connection altogether releases its slot even while the upstream stays
// silent; one that only half-closes keeps the connection (and gets what
// the upstream sends, see TestHTTPProxyTakeover).
func TestHTTPProxyUpgradedHangup(t *testing.T) {
	up, _ := routesUpstream(t)
	p, sock := startProxy(t, up, "[[rule]]\nanyone = true\n\n[[route]]\nname = \"all\"\nmatch = \"/\"\n", "--max-conns", "1")
	c := dial(t, sock)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "POST /silent HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("POST /silent: %v, %v; want 101", res, err)
	}
	c.Close() // gone, while the upstream stays silent
	// The only slot must come free for the next client.
	if code, err := func() (int, error) {
		res, err := unixClient(sock).Get("http://x/hello")
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}(); err != nil || code != 200 {
		t.Fatalf("the next client: %d, %v; want its request served once the first client is gone", code, err)
	}
	p.waitLog(t, "allowed", 2)
}
