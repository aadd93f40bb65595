package policy

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/secnet/secnet"
)

func writeKey(t *testing.T, dir, name string, mode os.FileMode) ([]byte, string) {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, key, 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return key, p
}

// A policy with a sharedsecret key: the listener built from it challenges
// clients, accepts the key of either file, and refuses another.
func TestSharedSecretPolicy(t *testing.T) {
	dir := t.TempDir()
	oldKey, oldPath := writeKey(t, dir, "old.key", 0600)
	newKey, newPath := writeKey(t, dir, "new.key", 0400)
	wrong, _ := writeKey(t, dir, "wrong.key", 0600)
	src := "[[rule]]\nsameuser = true\nsharedsecret = [\"" + oldPath + "\", \"" + newPath + "\"]\n"
	pol, err := Parse(strings.NewReader(src), "p.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := pol.String(); got != "sameuser(uid "+strconv.Itoa(os.Geteuid())+")\nsharedsecret(2 keys)" {
		t.Errorf("policy %q", got)
	}
	sock := filepath.Join(dir, "s")
	ln, err := secnet.Listen("unix", sock, pol.Rules()...)
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
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	for _, tc := range []struct {
		key []byte
		ok  bool
	}{{oldKey, true}, {newKey, true}, {wrong, false}} {
		d := secnet.Dialer{Rules: []secnet.Rule{secnet.SameUser()}, Handshake: secnet.ProveSharedSecret(tc.key)}
		c, err := d.DialSecure(context.Background(), "unix", sock)
		if !tc.ok {
			if !errors.Is(err, secnet.ErrHandshakeRefused) {
				t.Errorf("a key not in the policy: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("a key of the policy: %v", err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != "hi" {
			t.Errorf("read %q", b)
		}
	}
}

func TestSharedSecretPolicyErrors(t *testing.T) {
	dir := t.TempDir()
	_, good := writeKey(t, dir, "good.key", 0600)
	_, open := writeKey(t, dir, "open.key", 0644)
	for _, tc := range []struct {
		name, src string
		line      int
		key, msg  string
	}{
		{"readable by others", "[[rule]]\nuid = 0\nsharedsecret = \"" + open + "\"\n", 3, "rule.sharedsecret",
			"mode 0644 lets its group or others read or write it"},
		{"second file missing", "[[rule]]\nsharedsecret = [\n  \"" + good + "\",\n  \"" + dir + "/none\",\n]\n", 4, "rule.sharedsecret",
			"no such file"},
		{"relative", "[[rule]]\nsharedsecret = \"agent.key\"\n", 2, "rule.sharedsecret", "must be absolute"},
		{"directory", "[[rule]]\nsharedsecret = \"" + dir + "\"\n", 2, "rule.sharedsecret", "not a regular file"},
		{"in anyof", "[[rule]]\nanyof = [{ uid = 0 }, { sharedsecret = \"" + good + "\" }]\n", 2, "rule.anyof.sharedsecret",
			"belongs in a [[rule]] table itself"},
		{"in not", "[[rule]]\n[rule.not]\nsharedsecret = \"" + good + "\"\n", 3, "rule.not.sharedsecret",
			"belongs in a [[rule]] table itself"},
		{"not a string", "[[rule]]\nsharedsecret = 1\n", 2, "rule.sharedsecret", "want the absolute path of a key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Parse(strings.NewReader(tc.src), "")
			checkPolicyError(t, pol, err, tc.line, tc.key, tc.msg)
		})
	}
}
