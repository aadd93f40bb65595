package secnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func init() {
	childRoles["panicnil"] = runPanicNil
}

// runPanicNil checks, in a process started with GODEBUG=panicnil=1, that
// a RuleFunc calling panic(nil), which recover then reports as nil, fails
// its peer, also under Not.
func runPanicNil() int {
	if v := func() (v any) {
		defer func() { v = recover() }()
		panic(nil)
	}(); v != nil {
		fmt.Println("skip: panic(nil) is recovered as", v)
		return 0
	}
	r := RuleFunc("nilpanic", func(*Peer) error { panic(nil) })
	for _, r := range []Rule{r, Not(r)} {
		err := r.Check(&Peer{known: attrAll})
		var pe *PanicError
		if !errors.As(err, &pe) {
			fmt.Printf("%s: %v, want a *PanicError\n", r, err)
			return 1
		}
	}
	fmt.Println("ok")
	return 0
}

// A RuleFunc that panics rejects its peer with a *PanicError, also under
// Not, and the listener goes on with the next peer.
func TestRuleFuncPanicFailsClosed(t *testing.T) {
	bin := peerBinary(t)
	for _, tc := range []struct {
		name string
		wrap func(Rule) Rule
	}{
		{"plain", func(r Rule) Rule { return r }},
		{"not", Not},
		{"anyof", func(r Rule) Rule { return AnyOf(r, UID(os.Geteuid()+1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			r := RuleFunc("boom", func(p *Peer) error {
				if calls.Add(1) == 1 {
					panic("first peer")
				}
				if tc.name == "not" {
					return errors.New("does not match") // Not passes it
				}
				return nil
			})
			h := listen(t, tc.wrap(r))
			startClient(t, bin, h.path, "echo", nil)
			rej := h.mustReject(t)
			var pe *PanicError
			if !errors.As(rej, &pe) {
				t.Fatalf("rejected with %v, want a *PanicError", rej)
			}
			if pe.Rule != "boom" || pe.Value != "first peer" || !strings.Contains(string(pe.Stack), "panic_test.go") {
				t.Errorf("PanicError{Rule: %q, Value: %v}, stack %d bytes without this file", pe.Rule, pe.Value, len(pe.Stack))
			}
			if !strings.Contains(rej.Error(), `boom panicked: "first peer"`) {
				t.Errorf("reason %q does not say the rule panicked", rej.Error())
			}
			startClient(t, bin, h.path, "echo", nil)
			h.mustAccept(t)
		})
	}
}

// panic(nil) with GODEBUG=panicnil=1, where recover reports nothing, fails
// the peer too.
func TestRuleFuncPanicNil(t *testing.T) {
	cmd := exec.Command(peerBinary(t))
	cmd.Env = append(os.Environ(), "SECNET_TEST_ROLE=panicnil", "GODEBUG=panicnil=1", "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	switch got := strings.TrimSpace(string(out)); {
	case strings.HasPrefix(got, "skip:"):
		t.Skip(got)
	case err != nil || got != "ok":
		t.Fatalf("%v: %s", err, got)
	}
}

// A Handshake function that panics rejects its peer; a Dialer's Handshake
// that panics makes Dial fail. Neither stops the process.
func TestHandshakePanic(t *testing.T) {
	h := listen(t, Anyone(), Handshake("hs", func(context.Context, *SecureConn) error { panic(errors.New("hs bug")) }))
	startClient(t, peerBinary(t), h.path, "echo", nil)
	rej := h.mustReject(t)
	var pe *PanicError
	if !errors.As(rej, &pe) || pe.Rule != "hs" || pe.Unwrap() == nil || pe.Unwrap().Error() != "hs bug" {
		t.Fatalf("rejected with %v, want the handshake's *PanicError", rej)
	}

	// A panic after the deadline is reported with it.
	lc := ListenConfig{Mode: 0666, VerifyTimeout: 50 * time.Millisecond}
	late := listenConfig(t, lc, Anyone(), Handshake("late", func(ctx context.Context, _ *SecureConn) error {
		<-ctx.Done()
		panic("late bug")
	}))
	startClient(t, peerBinary(t), late.path, "hold", nil)
	rej = late.mustReject(t)
	if !errors.As(rej, &pe) || pe.Value != "late bug" || !errors.Is(rej, ErrVerifyTimeout) {
		t.Fatalf("rejected with %v, want the deadline and the handshake's *PanicError", rej)
	}

	path := filepath.Join(sockDir(t), "plain")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := serveEcho(ln)
	defer func() { ln.Close(); <-done }()
	d := Dialer{Rules: []Rule{UID(os.Geteuid())}, Handshake: func(context.Context, *SecureConn) error { panic("client bug") }}
	c, err := d.DialSecure(context.Background(), "unix", path)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded with a panicking Handshake")
	}
	if !errors.As(err, &pe) || pe.Rule != "Dialer.Handshake" || pe.Value != "client bug" {
		t.Fatalf("Dial: %v, want a *PanicError", err)
	}
}
