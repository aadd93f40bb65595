package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/secnet/secnet"
)

const inspectUsage = `secnet inspect --listen PATH [--policy FILE] [--json] [options]

A diagnostic server: accepts every connection on the Unix socket PATH,
prints the identity of the process that connected (one JSON object per
line with --json) and, with a policy, the verdict and the rules that
failed, then closes the connection. It runs until SIGINT or SIGTERM, or
until --count connections were inspected; SIGHUP ends it too.`

func runInspect(e *env, args []string) int {
	f := newFlags("inspect", inspectUsage)
	listen := f.String("listen", "", "`path` of the socket to create and accept on (required)")
	policyFile := f.String("policy", "", "policy `file` to check each peer with")
	asJSON := f.Bool("json", false, "print one JSON object per line")
	mode := f.String("mode", "", "permission `bits` of the socket file, in octal, e.g. 0666 (default: 0777 less the umask)")
	count := f.Int("count", 0, "exit after this many connections (0: run until a signal)")
	if _, status, ok := f.parse(e, args, 0); !ok {
		return status
	}
	if status, ok := f.require(e, "listen"); !ok {
		return status
	}
	fileMode, err := parseMode(*mode)
	if err != nil {
		return f.fail(e, "--mode: %v", err)
	}
	if *count < 0 {
		return f.fail(e, "--count must not be negative (got %d)", *count)
	}
	if err := checkSocketPath("--listen", *listen); err != nil {
		return f.fail(e, "%v", err)
	}
	pol, err := loadPolicy(*policyFile)
	if err != nil {
		return failf(e, "inspect", "%v", err)
	}
	sigs := make(chan os.Signal, 1)
	// SIGHUP too: whatever ends inspect removes its socket file.
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	lc := secnet.ListenConfig{Mode: fileMode}
	// Anyone: every peer is let in to be inspected; the policy only gives
	// a verdict.
	ln, err := lc.Listen(context.Background(), "unix", *listen, secnet.Anyone())
	if err != nil {
		return failf(e, "inspect", "%v", err)
	}
	defer ln.Close()
	go func() {
		<-sigs
		ln.Close()
	}()
	fmt.Fprintf(e.stderr, "secnet inspect: listening on %s %s\n", *listen, socketFileText(*listen))
	for n := 0; *count == 0 || n < *count; n++ {
		c, err := ln.AcceptSecure()
		if errors.Is(err, net.ErrClosed) {
			return exitOK
		}
		if err != nil {
			return failf(e, "inspect", "%v", err)
		}
		p := c.Peer()
		c.Close()
		if n > 0 && !*asJSON {
			fmt.Fprintln(e.stdout)
		}
		if err := newReport(&p, pol).write(e.stdout, *asJSON); err != nil {
			return failf(e, "inspect", "%v", err)
		}
	}
	return exitOK
}
