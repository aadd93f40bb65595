package secnet

import (
	"errors"
	"strings"
)

// ErrRejected is matched by every *RejectError:
// errors.Is(err, secnet.ErrRejected).
var ErrRejected = errors.New("secnet: peer rejected")

// ErrVerifyTimeout is the reason of a peer whose verification outlasted
// the listener's deadline (ListenConfig.VerifyTimeout):
// errors.Is(err, secnet.ErrVerifyTimeout). The connection was closed at
// the deadline.
var ErrVerifyTimeout = errors.New("verification did not finish within the deadline")

// ErrTooManyPending is the reason of a peer rejected before verification
// because its uid already held every verification slot it may hold
// (ListenConfig.WorkersPerUID) and the most connections that may wait for
// one (ListenConfig.QueueSize), while those verifications were stalled
// (none ended for 50 ms).
var ErrTooManyPending = errors.New("too many connections of this uid waiting for verification")

// RejectError reports a peer that failed verification: every rule that
// was evaluated and failed, with its reason, the rules that were not
// evaluated, and the identity as far as it was read.
type RejectError struct {
	// Peer is the identity as far as it was read.
	Peer Peer
	// Failures lists every rule that was evaluated and failed, in the
	// order the rules were given.
	Failures []RuleError
	// NotEvaluated lists the rules, as Rule.String gives them, that the
	// listener did not evaluate because an earlier failure settled the
	// verdict: rules that would read more of the identity (/proc, a
	// digest) than those that failed. Listed in the order given.
	NotEvaluated []string
}

// Error says who the peer is and why each failed rule failed, e.g.
// "secnet: rejected peer pid=42 uid=1000 gid=1000: uid: peer uid 1000 is not 0".
func (e *RejectError) Error() string {
	var b strings.Builder
	b.WriteString("secnet: rejected peer ")
	b.WriteString(e.Peer.String())
	b.WriteString(": ")
	b.WriteString(ruleErrors{failed: e.Failures, skipped: e.NotEvaluated}.Error())
	return b.String()
}

// Is reports whether target is ErrRejected.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// Unwrap returns the failures, so that errors.Is and errors.As reach the
// reasons (ErrPeerExited, ErrProgramDeleted, ...).
func (e *RejectError) Unwrap() []error {
	out := make([]error, len(e.Failures))
	for i := range e.Failures {
		out[i] = e.Failures[i]
	}
	return out
}

// RuleError is the failure of one rule.
type RuleError struct {
	Rule string // the rule's short name (Rule.Name)
	Err  error  // the reason
}

func (e RuleError) Error() string { return e.Rule + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e RuleError) Unwrap() error { return e.Err }

// ruleErrors is the reason of a combinator: the failures of its rules,
// and the rules it did not evaluate because the verdict was settled
// without them.
type ruleErrors struct {
	failed  []RuleError
	skipped []string // Rule.String of each rule not evaluated
}

func (es ruleErrors) Error() string {
	parts := make([]string, len(es.failed), len(es.failed)+1)
	for i, e := range es.failed {
		parts[i] = e.Error()
	}
	if len(es.skipped) > 0 {
		parts = append(parts, "not evaluated: "+strings.Join(es.skipped, ", "))
	}
	return strings.Join(parts, "; ")
}

func (es ruleErrors) Unwrap() []error {
	out := make([]error, len(es.failed))
	for i := range es.failed {
		out[i] = es.failed[i]
	}
	return out
}
