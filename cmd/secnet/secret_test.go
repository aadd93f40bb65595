package main

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secnet/secnet"
)

// writeKeyFile writes a random 32-byte key with mode and returns it and
// its path.
func writeKeyFile(t *testing.T, mode os.FileMode) ([]byte, string) {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, key, 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return key, path
}

// A proxy whose policy has a sharedsecret rule requires the key of its
// clients: a client with the key goes through, one with another key is
// refused and told so; secnet whoami --secret-file answers it.
func TestProxySharedSecret(t *testing.T) {
	key, keyFile := writeKeyFile(t, 0600)
	wrong, wrongFile := writeKeyFile(t, 0400)
	_, openFile := writeKeyFile(t, 0644)
	_, up := echoUpstream(t)
	proxy, sock := startProxy(t, up, "[[rule]]\nanyone = true\nsharedsecret = \""+keyFile+"\"\n")

	d := secnet.Dialer{Rules: []secnet.Rule{secnet.Anyone()}, Handshake: secnet.ProveSharedSecret(key)}
	c, err := d.DialSecure(context.Background(), "unix", sock)
	if err != nil {
		t.Fatalf("dial with the key: %v", err)
	}
	roundTrip(t, c, "through the proxy")
	c.Close()

	d.Handshake = secnet.ProveSharedSecret(wrong)
	if _, err := d.DialSecure(context.Background(), "unix", sock); !errors.Is(err, secnet.ErrHandshakeRefused) {
		t.Errorf("dial with another key: %v", err)
	}
	rec := proxy.waitLog(t, "rejected", 1)
	if reason, _ := rec["reason"].(string); !strings.Contains(reason, "sharedsecret: the answer matches no accepted key") {
		t.Errorf("the proxy's log does not name the rule and the reason: %v", rec)
	}

	stdout, stderr, status := runSecnet(t, "whoami", "--secret-file", keyFile, sock)
	if status != exitOK || !strings.Contains(stdout, strconv.Itoa(proxy.cmd.Process.Pid)) {
		t.Errorf("whoami with the key: status %d\n%s%s", status, stdout, stderr)
	}
	_, stderr, status = runSecnet(t, "whoami", "--secret-file", wrongFile, sock)
	if status == exitOK || !strings.Contains(stderr, "refused the handshake: the answer matches none of its keys") {
		t.Errorf("whoami with another key: status %d, %q", status, stderr)
	}
	_, stderr, status = runSecnet(t, "whoami", "--secret-file", openFile, sock)
	if status == exitOK || !strings.Contains(stderr, "mode 0644 lets its group or others read or write it") {
		t.Errorf("whoami with a key others can read: status %d, %q", status, stderr)
	}
}

// TestHTTPProxySharedSecretReload: with routes, a reload checks the next
// request of an open connection against the new rules, but not with the
// handshake again: the client, which proved its key when it connected,
// speaks HTTP by then.
func TestHTTPProxySharedSecretReload(t *testing.T) {
	key, keyFile := writeKeyFile(t, 0600)
	up, _ := routesUpstream(t)
	src := "[[rule]]\nanyone = true\nsharedsecret = \"" + keyFile + "\"\n\n[[route]]\nname = \"all\"\nmatch = \"/\"\n"
	p, sock := startProxy(t, up, src)
	d := secnet.Dialer{Rules: []secnet.Rule{secnet.Anyone()}, Handshake: secnet.ProveSharedSecret(key)}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: 20 * time.Second}
	get := func() int {
		t.Helper()
		res, err := client.Get("http://x/hello")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if st := get(); st != 200 {
		t.Fatalf("before the reload: %d", st)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "policy reloaded", 1)
	if st := get(); st != 200 {
		t.Errorf("after the reload, on the same connection: %d, want 200", st)
	}
	p.waitLog(t, "request", 2)
	if n := len(p.logs("allowed")); n != 1 {
		t.Errorf("%d connections, want both requests on one", n)
	}
}
