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

// PeerBrief returns the attributes that name the peer in a log line: its
// credentials, groups, label and program, reading those that no rule
// needed as Peer does (the program through a pidfd). Its cgroup, unit
// and namespaces are set only when a rule read them: PeerBrief leaves
// out the /proc reads behind them, which cost more than the rest
// together, for a server that logs every connection. A later Peer reads
// them.
func (c *SecureConn) PeerBrief() Peer {
	return c.id.load(attrBrief)
}

// verifier applies rules to connections.
type verifier struct {
	rules  []Rule   // the rules that look at the identity alone
	hs     []Rule   // handshake rules, run after every other rule passed
	server serverID // who created the listening socket, when known
	need   attrs
	order  []int // rules, cheapest first
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
	v.order = byCost(v.rules)
	return v
}

// verify reads what the rules need from c and applies every rule, the
// handshake rules last. It returns the verified connection, or the
// reasons it was rejected; it never closes c. Once ctx is done it reads
// nothing more: the attributes not read yet fail with ctx's cause, and a
// handshake stops.
func (v *verifier) verify(ctx context.Context, c net.Conn) (*SecureConn, *RejectError) {
	return v.verifyCred(ctx, c, connCred{})
}

// verifyCred is verify for a connection whose peer's credentials were
// read already, when cred.ok (by the pipeline's accept loop).
func (v *verifier) verifyCred(ctx context.Context, c net.Conn, cred connCred) (*SecureConn, *RejectError) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, &RejectError{Failures: []RuleError{{
			Rule: "unix", Err: fmt.Errorf("connection is a %T, not a Unix socket", c),
		}}}
	}
	sc := &SecureConn{UnixConn: uc, id: identity{conn: uc, opts: v.opts, keep: v.keep}, server: v.server}
	id := &sc.id
	if cred.ok {
		id.peer = cred.peer()
	}
	id.mu.Lock()
	id.ev = evaluation{p: &id.peer, id: id, ctx: ctx}
	rej := v.check(&id.ev)
	id.ev = evaluation{}
	if rej == nil && v.keep {
		sc.held = id.hold()
	}
	// What pins the memory map was needed before the executable was read
	// for hold; a later Peer reads /proc without it.
	id.keep = false
	id.proc.release()
	id.mu.Unlock()
	if rej != nil {
		return nil, v.skipHandshakes(rej)
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
	return v.check(&evaluation{p: &p})
}

// check applies the rules to the peer of e, as AllOf would: cheapest
// first, and, when e reads the identity, no further than needed to
// settle the verdict.
func (v *verifier) check(e *evaluation) *RejectError {
	if e.id != nil {
		e.id.read(e.ctx, attrCred)
	}
	p := e.p
	if p.errs.cred != nil {
		return &RejectError{Peer: *p, Failures: []RuleError{{Rule: "credentials", Err: p.errs.cred}}}
	}
	err := e.allOf(v.rules, v.order, false)
	if err == nil {
		return nil
	}
	var res ruleErrors
	if u, ok := err.(*unknownError); ok {
		res = u.err.(ruleErrors)
	} else {
		res = err.(ruleErrors)
	}
	return &RejectError{Peer: *p, Failures: res.failed, NotEvaluated: res.skipped}
}
