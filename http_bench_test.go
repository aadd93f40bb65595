package secnet

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkHTTP compares requests to a plain net/http server on a Unix
// socket with the same server on a secnet listener with ConnContext and a
// Require route, the client dialing through a Dialer that verifies the
// server. "keepalive" reuses one connection; "newconn" dials for every
// request, so it includes the verification of both ends.
func BenchmarkHTTP(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, keep := range []bool{true, false} {
		for _, secure := range []bool{false, true} {
			name := map[bool]string{true: "keepalive", false: "newconn"}[keep] + "/" + map[bool]string{true: "secnet", false: "plain"}[secure]
			b.Run(name, func(b *testing.B) {
				dir, err := os.MkdirTemp("", "snb")
				if err != nil {
					b.Fatal(err)
				}
				defer os.RemoveAll(dir)
				sock := filepath.Join(dir, "s")
				var ln net.Listener
				h := http.Handler(ok)
				srv := &http.Server{}
				dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", sock)
				}
				if secure {
					ln, err = Listen("unix", sock, UID(os.Getuid()))
					h = Require(UID(os.Getuid()))(ok)
					srv.ConnContext = ConnContext
					d := &Dialer{Rules: []Rule{UID(os.Getuid())}}
					dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
						return d.DialContext(ctx, "unix", sock)
					}
				} else {
					ln, err = net.Listen("unix", sock)
				}
				if err != nil {
					b.Fatal(err)
				}
				srv.Handler = h
				go srv.Serve(ln)
				defer srv.Close()
				tr := &http.Transport{DialContext: dial, DisableKeepAlives: !keep}
				defer tr.CloseIdleConnections()
				c := &http.Client{Transport: tr}
				b.ResetTimer()
				for b.Loop() {
					resp, err := c.Get("http://bench/")
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		}
	}
}
