package secnet

import (
	"context"
	"fmt"
	"net"
)

// SecureConn is a Unix socket connection whose peer passed verification.
// It embeds the *net.UnixConn, so every method of that type works
// unchanged (ReadMsgUnix and WriteMsgUnix for passing file descriptors,
// CloseRead, CloseWrite, SyscallConn, File, deadlines), and adds Peer
// (and Recheck, with KeepPidfd).
type SecureConn struct {
	*net.UnixConn
	id     identity
	held   *heldPeer // the peer's pidfd, with KeepPidfd
	server serverID  // who created the listening socket, for SharedSecret
}

// Peer returns the identity of the process at the other end. Attributes
// that no rule needed, but ProgramSHA256, are read on the first call (the
// program, through a pidfd, as the rules read it); after that the
// identity is fixed. Peer is safe for concurrent use.
func (c *SecureConn) Peer() Peer {
	return c.id.load(attrAll)
}

// verifier applies rules to connections.
type verifier struct {
	rules  []Rule   // the rules that look at the identity alone
	hs     []Rule   // handshake rules, run after every other rule passed
	server serverID // who created the listening socket, when known
	need   attrs
	opts   readOptions
	keep   bool  // keep each peer's pidfd for Recheck
	err    error // the rules are invalid: nothing is accepted
}

func newVerifier(rules []Rule) verifier {
	v := verifier{need: attrCred}
	if len(rules) == 0 {
		v.err = fmt.Errorf("secnet: no rules given (use secnet.Anyone() to accept every local peer explicitly)")
	}
	for _, r := range rules {
		if err := r.Err(); err != nil {
			v.err = fmt.Errorf("secnet: %w", err)
			break
		}
		v.need |= r.need
		if r.hs != nil {
			v.hs = append(v.hs, r)
		} else {
			v.rules = append(v.rules, r)
		}
	}
	return v
}

// verify reads what the rules need from c and applies every rule, the
// handshake rules last. It returns the verified connection, or the
// reasons it was rejected; it never closes c. Once ctx is done it reads
// nothing more: the attributes not read yet fail with ctx's cause, and a
// handshake stops.
func (v *verifier) verify(ctx context.Context, c net.Conn) (*SecureConn, *RejectError) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, &RejectError{Failures: []RuleError{{
			Rule: "unix", Err: fmt.Errorf("connection is a %T, not a Unix socket", c),
		}}}
	}
	sc := &SecureConn{UnixConn: uc, id: identity{conn: uc, opts: v.opts}, server: v.server}
	p := &sc.id.peer
	readPeer(uc, v.need, p, v.opts)
	if rej := v.check(p); rej != nil {
		return nil, rej
	}
	if v.keep {
		sc.held = holdPeer(uc, p, v.opts)
	}
	if rej := v.handshake(ctx, sc); rej != nil {
		if sc.held != nil {
			sc.held.close()
		}
		return nil, rej
	}
	return sc, nil
}

// checkConn applies the rules to a connection verified before, reading
// what they need that was not read yet.
func (v *verifier) checkConn(sc *SecureConn) *RejectError {
	p := sc.id.load(v.need)
	return v.check(&p)
}

// check applies every rule to p, which holds what the rules need.
func (v *verifier) check(p *Peer) *RejectError {
	var failed []RuleError
	if p.errs.cred != nil {
		failed = append(failed, RuleError{Rule: "credentials", Err: p.errs.cred})
	} else {
		for _, r := range v.rules {
			if err := r.check(p); err != nil {
				failed = append(failed, RuleError{Rule: r.name, Err: err})
			}
		}
	}
	if failed != nil {
		return &RejectError{Peer: *p, Failures: failed}
	}
	return nil
}
