package secnet_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/secnet/secnet"
)

// An HTTP server on a verified Unix socket: every handler can see who the
// client is, and Require guards a route with more rules. The client is an
// http.Client whose connections go through a Dialer, which checks that
// the server runs as the expected user.
func Example_http() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "api.sock")

	// Server: any local process may connect; only uid 4242 may reload.
	ln, err := secnet.Listen("unix", sock, secnet.Anyone())
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		p, _ := secnet.PeerFromContext(r.Context())
		fmt.Fprintln(w, "same process", p.PID == os.Getpid())
	})
	reload := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "reloaded") })
	mux.Handle("POST /reload", secnet.Require(secnet.UID(4242))(reload))
	srv := &http.Server{Handler: mux, ConnContext: secnet.ConnContext}
	go srv.Serve(ln)
	defer srv.Close()

	// Client: talk only to a server that runs as this user.
	d := &secnet.Dialer{Rules: []secnet.Rule{secnet.SameUser()}}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()

	for _, req := range []struct{ method, path string }{{"GET", "/whoami"}, {"POST", "/reload"}} {
		r, _ := http.NewRequest(req.method, "http://api"+req.path, nil)
		resp, err := client.Do(r)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// A 403 body names the client and every failed rule, e.g.
		// "Forbidden: secnet: rejected peer pid=42 uid=1000 gid=1000: uid: peer uid 1000 is not 4242".
		first, _, _ := strings.Cut(strings.TrimSpace(string(body)), ":")
		fmt.Println(resp.StatusCode, first)
	}
	// Output:
	// 200 same process true
	// 403 Forbidden
}

// ConnContext passes the verified connection to every request; a handler
// authorises per request with PeerFromContext.
func ExampleConnContext() {
	ln, err := secnet.Listen("unix", "/run/myd.sock", secnet.Anyone())
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/config", func(w http.ResponseWriter, r *http.Request) {
		p, ok := secnet.PeerFromContext(r.Context())
		if r.Method != http.MethodGet && (!ok || p.UID != 0) {
			http.Error(w, "only root may change the configuration", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "hello %s\n", p.String())
	})
	srv := &http.Server{ConnContext: secnet.ConnContext}
	log.Fatal(srv.Serve(ln))
}

// Require guards one route with rules of its own.
func ExampleRequire() {
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux := http.NewServeMux()
	mux.Handle("POST /admin/", secnet.Require(secnet.UID(0), secnet.Program("/usr/bin/myctl"))(admin))
	// Serve mux with http.Server{Handler: mux, ConnContext: secnet.ConnContext}
	// on a secnet listener.
}

// A Dialer in an http.Transport: every connection is made to the socket
// and checked before a request is sent on it.
func ExampleDialer_http() {
	d := &secnet.Dialer{Rules: []secnet.Rule{secnet.UID(0)}}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", "/run/myd.sock")
		},
	}}
	resp, err := client.Get("http://myd/status") // the host name is not used
	if err != nil {
		log.Fatal(err) // a server that is not root: a *secnet.RejectError inside
	}
	defer resp.Body.Close()
}
