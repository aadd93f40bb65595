package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/secnet/secnet"
)

const demoUsage = `secnet demo

Shows what secnet verifies, in a few seconds and without setup: it listens
on a Unix socket in a new temporary directory with the rules sameuser
and program(this executable); a child process running this
program connects and is verified; a copy of this program connects and is
rejected, because Program compares files, not names. Then it removes
everything it created.`

// demoClientCommand is the hidden subcommand the demo starts as its
// client: it connects to the socket and prints what it reads.
const demoClientCommand = "demo-client"

// demoTimeout bounds each step of the demo.
const demoTimeout = 10 * time.Second

func runDemo(e *env, args []string) int {
	f := newFlags("demo", demoUsage)
	if _, status, ok := f.parse(e, args, 0); !ok {
		return status
	}
	if err := demo(e.stdout); err != nil {
		return failf(e, "demo", "%v", err)
	}
	return exitOK
}

func demo(w io.Writer) error {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return fmt.Errorf("finding this program: %w", err)
	}
	dir, err := os.MkdirTemp("", "secnet-demo")
	if err != nil {
		return err
	}
	defer func() {
		if err := os.RemoveAll(dir); err == nil {
			fmt.Fprintf(w, "\nRemoved %s and everything in it.\n", dir)
		}
	}()
	// Copy before any child is started, so that no child inherits the
	// file open for writing (which would make exec fail with ETXTBSY).
	clone := filepath.Join(dir, "secnet-copy")
	if err := copyFile(exe, clone); err != nil {
		return err
	}

	sock := filepath.Join(dir, "demo.sock")
	rules := []secnet.Rule{secnet.SameUser(), secnet.Program(exe)}
	rejected := make(chan *secnet.RejectError, 1)
	lc := secnet.ListenConfig{Mode: 0600, Rejected: func(r *secnet.RejectError) { rejected <- r }}
	ln, err := lc.Listen(context.Background(), "unix", sock, rules...)
	if err != nil {
		return err
	}
	defer ln.Close()
	accepted := make(chan *secnet.SecureConn, 1)
	go func() {
		for {
			c, err := ln.AcceptSecure()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	fmt.Fprintf(w, "A verified listener on %s\nwith the rules %s and %s\n\n", sock, rules[0], rules[1])

	fmt.Fprintf(w, "1. A child process running this program connects:\n   %s\n", exe)
	client := startDemoClient(exe, sock)
	select {
	case c := <-accepted:
		p := c.Peer()
		var b strings.Builder
		newReport(&p, nil).write(&b, false)
		fmt.Fprintf(w, "   Accepted. The listener verified:\n%s", indent(b.String(), "     "))
		fmt.Fprintf(c, "hello pid %d, you were verified\n", p.PID)
		c.Close()
	case rej := <-rejected:
		return fmt.Errorf("the child running this program was rejected: %w", rej)
	case <-time.After(demoTimeout):
		return errors.New("no connection from the child within 10s")
	}
	if err := printClient(w, client); err != nil {
		return err
	}

	fmt.Fprintf(w, "\n2. A child process running a copy of this program connects:\n   %s\n", clone)
	client = startDemoClient(clone, sock)
	select {
	case rej := <-rejected:
		fmt.Fprintln(w, "   Rejected:")
		for _, f := range rej.Failures {
			fmt.Fprintf(w, "     %s\n", f.Error())
		}
		fmt.Fprintln(w, "   The copy has the same bytes under another name: Program compares files, not names.")
	case c := <-accepted:
		c.Close()
		return errors.New("the copy of this program was accepted")
	case <-time.After(demoTimeout):
		return errors.New("no connection from the copy within 10s")
	}
	return printClient(w, client)
}

// startDemoClient runs the demo client bin against sock; the channel
// yields its output once it exits.
func startDemoClient(bin, sock string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, demoClientCommand, sock).Output()
		ch <- result{strings.TrimSpace(string(out)), err}
	}()
	return ch
}

type result struct {
	out string
	err error
}

func printClient(w io.Writer, ch <-chan result) error {
	r := <-ch
	if r.err != nil {
		return fmt.Errorf("demo client: %w (%s)", r.err, r.out)
	}
	fmt.Fprintf(w, "   The client read: %s\n", r.out)
	return nil
}

// runDemoClient connects to the socket and prints the line it reads, or
// that the connection was closed.
func runDemoClient(e *env, args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(e.stderr, "usage: secnet demo-client PATH")
		return exitUsage
	}
	c, err := net.DialTimeout("unix", args[0], demoTimeout)
	if err != nil {
		return failf(e, demoClientCommand, "%v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(demoTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	switch {
	case line != "":
		fmt.Fprintf(e.stdout, "%q\n", strings.TrimSuffix(line, "\n"))
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		fmt.Fprintln(e.stdout, "nothing: the server closed the connection")
	default:
		return failf(e, demoClientCommand, "%v", err)
	}
	return exitOK
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0755)
}

func indent(s, prefix string) string {
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString(prefix)
			b.WriteString(line)
		}
	}
	return b.String()
}
