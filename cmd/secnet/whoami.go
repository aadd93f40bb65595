package main

import (
	"context"
	"time"

	"github.com/secnet/secnet"
)

const whoamiUsage = `secnet whoami [--policy FILE] [--secret-file FILE] [--json] PATH

Connects to the Unix socket PATH and prints the identity of the server: the
process that created the listening socket, with the credentials it had
when it called listen() (SO_PEERCRED on a client socket). With a policy it
also prints the verdict, and exits with status 3 if the server fails it.
With a secret file it answers the server's shared-secret challenge (a
sharedsecret rule) with the key in the file, which only its owner may read,
and fails with the server's reason if the server refuses the key.`

func runWhoami(e *env, args []string) int {
	f := newFlags("whoami", whoamiUsage)
	policyFile := f.String("policy", "", "policy `file` the server must pass")
	secretFile := f.String("secret-file", "", "key `file` that answers the server's sharedsecret rule (mode 0600 or 0400)")
	asJSON := f.Bool("json", false, "print a JSON object")
	timeout := f.Duration("timeout", 5*time.Second, "timeout for connecting (0: none)")
	pos, status, ok := f.parse(e, args, 1)
	if !ok {
		return status
	}
	if len(pos) != 1 {
		return f.fail(e, "the socket PATH is required")
	}
	if err := checkNonNegative("--timeout", *timeout); err != nil {
		return f.fail(e, "%v", err)
	}
	if err := checkSocketPath("PATH", pos[0]); err != nil {
		return f.fail(e, "%v", err)
	}
	pol, err := loadPolicy(*policyFile)
	if err != nil {
		return failf(e, "whoami", "%v", err)
	}
	// Anyone: connect to any server and show who it is; the policy is
	// applied below so that a failing server is described too.
	d := secnet.Dialer{Rules: []secnet.Rule{secnet.Anyone()}, Timeout: *timeout}
	if *secretFile != "" {
		key, err := secnet.ReadSecretFile(*secretFile)
		if err != nil {
			return failf(e, "whoami", "%v", err)
		}
		d.Handshake = secnet.ProveSharedSecret(key)
	}
	c, err := d.DialSecure(context.Background(), "unix", pos[0])
	if err != nil {
		return failf(e, "whoami", "%v", err)
	}
	p := c.Peer()
	c.Close()
	r := newReport(&p, pol)
	if err := r.write(e.stdout, *asJSON); err != nil {
		return failf(e, "whoami", "%v", err)
	}
	if r.rejected() {
		return exitRejected
	}
	return exitOK
}
