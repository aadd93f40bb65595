package secnet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/secnet/secnet"
)

// A listener that accepts only processes of the same user, and a handler
// that reads who its peer is.
func ExampleListen() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "example.sock")

	ln, err := secnet.Listen("unix", sock, secnet.SameUser())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()

	go func() {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
	}()

	c, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	p := c.(*secnet.SecureConn).Peer()
	fmt.Println("peer is this process:", p.PID == os.Getpid())
	fmt.Println("peer uid is ours:", p.UID == os.Geteuid())
	// Output:
	// peer is this process: true
	// peer uid is ours: true
}

// ListenConfig sets the socket file's mode and reports rejected peers.
func ExampleListenConfig() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "example.sock")

	rejected := make(chan *secnet.RejectError, 1)
	lc := secnet.ListenConfig{
		Mode:     0600,
		Rejected: func(e *secnet.RejectError) { rejected <- e },
	}
	// Only a uid that is not ours: this process is rejected.
	ln, err := lc.Listen(context.Background(), "unix", sock, secnet.UID(os.Geteuid()+1))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go ln.Accept() // returns only when the listener is closed

	c, err := net.Dial("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	e := <-rejected
	fmt.Println("rejected by", e.Failures[0].Rule)
	// Output: rejected by uid
}

// Rules combine: AnyOf passes when one alternative passes; the rules given
// to Listen must all pass.
func ExampleAnyOf() {
	admin := secnet.AnyOf(secnet.UID(0), secnet.Group("adm"))
	tool := secnet.AllOf(admin, secnet.Not(secnet.Label("*_untrusted_t:*")))
	fmt.Println(tool)
	// Output: allof(anyof(uid(0), group(adm)), not(label(*_untrusted_t:*)))
}

// A custom check with access to the whole identity.
func ExampleRuleFunc() {
	lowPID := secnet.RuleFunc("low-pid", func(p *secnet.Peer) error {
		if p.PID < 1000 {
			return nil
		}
		return fmt.Errorf("pid %d is not below 1000", p.PID)
	})
	fmt.Println(lowPID.Name())
	// Output: low-pid
}

// Dial verifies the server before the client sends anything.
func ExampleDial() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "example.sock")
	ln, err := secnet.Listen("unix", sock, secnet.Anyone())
	if err != nil {
		log.Fatal(err)
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

	// The server must run as our user.
	c, err := secnet.Dial("unix", sock, secnet.SameUser())
	if err != nil {
		log.Fatal(err)
	}
	c.Close()
	fmt.Println("server verified")

	// A server that must be some other user is refused.
	_, err = secnet.Dial("unix", sock, secnet.UID(os.Geteuid()+1))
	fmt.Println("refused:", errors.Is(err, secnet.ErrRejected))
	// Output:
	// server verified
	// refused: true
}

// The verification pipeline's knobs: how many peers are verified at once,
// how many of those one uid may hold, how many verified connections may
// wait for Accept, and how long one verification may take. Here a
// handshake waits for the peer to speak first; a peer that stays silent
// is rejected at the deadline, without delaying anyone else.
func ExampleListenConfig_NewListener() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	inner, err := net.Listen("unix", filepath.Join(dir, "example.sock"))
	if err != nil {
		log.Fatal(err)
	}

	rejected := make(chan *secnet.RejectError, 1)
	lc := secnet.ListenConfig{
		Workers:       32,
		WorkersPerUID: 4,
		QueueSize:     64,
		VerifyTimeout: 100 * time.Millisecond,
		Rejected:      func(e *secnet.RejectError) { rejected <- e },
	}
	hello := secnet.Handshake("hello", func(ctx context.Context, c *secnet.SecureConn) error {
		_, err := io.ReadFull(c, make([]byte, 5)) // the peer speaks first
		return err
	})
	ln := lc.NewListener(inner, secnet.UID(os.Geteuid()), hello)
	defer ln.Close()
	go ln.Accept() // returns only when the listener is closed

	c, err := net.Dial("unix", inner.Addr().String()) // and says nothing
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	e := <-rejected
	fmt.Println("deadline:", errors.Is(e, secnet.ErrVerifyTimeout))
	// Output: deadline: true
}

// Code that reads a peer's credentials itself needs a *net.UnixConn:
// ttrpc's UnixCredentialsFunc handshakers, tailscale's peercred and
// snapd's ucrednet assert that type and refuse anything else. UnixConns
// hands them the verified connections as *net.UnixConn, for example
// ttrpcServer.Serve(ctx, ln.UnixConns()).
func ExampleListener_UnixConns() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "example.sock")
	ln, err := secnet.Listen("unix", sock, secnet.SameUser())
	if err != nil {
		log.Fatal(err)
	}
	raw := ln.UnixConns()
	defer raw.Close()
	go func() {
		c, err := net.Dial("unix", sock)
		if err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()

	c, err := raw.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, ok := c.(*net.UnixConn) // what such code checks first
	fmt.Println("*net.UnixConn:", ok)
	// Output: *net.UnixConn: true
}
