package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"strconv"
	"strings"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/policy"
)

// report is what inspect, whoami and check print about a peer: its
// identity with names, and the policy's verdict when there is a policy.
type report struct {
	PID        int       `json:"pid"`
	UID        int       `json:"uid"`
	User       string    `json:"user,omitempty"`
	GID        int       `json:"gid"`
	Group      string    `json:"group,omitempty"`
	Groups     []int     `json:"groups"`
	GroupNames []string  `json:"group_names,omitempty"` // names of Groups, "" for none
	Program    string    `json:"program,omitempty"`
	Label      string    `json:"label,omitempty"`
	Error      string    `json:"error,omitempty"`   // why parts of the identity could not be read
	Verdict    string    `json:"verdict,omitempty"` // "allowed" or "rejected"; empty without a policy
	Failures   []failure `json:"failures,omitempty"`
}

type failure struct {
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
}

// newReport describes p and, when pol is not nil, checks it.
func newReport(p *secnet.Peer, pol *policy.Policy) *report {
	r := &report{PID: p.PID, UID: p.UID, GID: p.GID, Groups: p.Groups, Program: p.Program, Label: p.Label}
	if r.Groups == nil {
		r.Groups = []int{}
	}
	r.User, _ = p.Username()
	r.Group = groupName(p.GID)
	if len(p.Groups) > 0 {
		r.GroupNames = make([]string, len(p.Groups))
		for i, g := range p.Groups {
			r.GroupNames[i] = groupName(g)
		}
	}
	if err := p.Err(); err != nil {
		r.Error = oneLine(err)
	}
	if pol != nil {
		r.Verdict = "allowed"
		if err := pol.Check(p); err != nil {
			r.Verdict = "rejected"
			r.Failures = failures(err)
		}
	}
	return r
}

// failures lists the failed rules of a *secnet.RejectError.
func failures(err error) []failure {
	var rej *secnet.RejectError
	if !errors.As(err, &rej) {
		return []failure{{Rule: "policy", Reason: err.Error()}}
	}
	out := make([]failure, len(rej.Failures))
	for i, f := range rej.Failures {
		out[i] = failure{Rule: f.Rule, Reason: f.Err.Error()}
	}
	return out
}

func (r *report) rejected() bool { return r.Verdict == "rejected" }

// write prints the report as one JSON object on a line, or as text.
func (r *report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%-9s%s\n", k+":", v) }
	line("pid", strconv.Itoa(r.PID))
	line("uid", named(r.UID, r.User))
	line("gid", named(r.GID, r.Group))
	groups := make([]string, len(r.Groups))
	for i, g := range r.Groups {
		name := ""
		if i < len(r.GroupNames) {
			name = r.GroupNames[i]
		}
		groups[i] = named(g, name)
	}
	line("groups", orNone(strings.Join(groups, ", ")))
	line("program", orNoneQuoted(r.Program))
	line("label", orNoneQuoted(r.Label))
	if r.Error != "" {
		line("unread", r.Error)
	}
	if r.Verdict != "" {
		line("verdict", r.Verdict)
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "  %s: %s\n", f.Rule, f.Reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// groupName returns the name of group gid, or "" when it has none.
func groupName(gid int) string {
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		return ""
	}
	return g.Name
}

func named(id int, name string) string {
	if name == "" {
		return strconv.Itoa(id)
	}
	return strconv.Itoa(id) + " (" + name + ")"
}

// orNoneQuoted quotes s, a string the peer controls, so that it stays on
// its line.
func orNoneQuoted(s string) string {
	if s == "" {
		return "(none)"
	}
	return strconv.Quote(s)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// peerAttr is the identity of a peer for a log record, as far as it was
// read.
func peerAttr(p *secnet.Peer) slog.Attr { return identityAttr("peer", p) }

// identityAttr is the identity of a process under key.
func identityAttr(key string, p *secnet.Peer) slog.Attr {
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs, slog.Int("pid", p.PID), slog.Int("uid", p.UID), slog.Int("gid", p.GID))
	if p.Groups != nil {
		attrs = append(attrs, slog.Any("groups", p.Groups))
	}
	if p.Program != "" {
		attrs = append(attrs, slog.String("program", p.Program))
	}
	if p.Label != "" {
		attrs = append(attrs, slog.String("label", p.Label))
	}
	if err := p.Err(); err != nil {
		attrs = append(attrs, slog.String("unread", oneLine(err)))
	}
	return slog.Attr{Key: key, Value: slog.GroupValue(attrs...)}
}

// oneLine is the text of an error that may join several (one per
// attribute that could not be read, often for the same reason) on one
// line, each reason once.
func oneLine(err error) string {
	var parts []string
	seen := map[string]bool{}
	for _, part := range strings.Split(err.Error(), "\n") {
		part = strings.TrimSpace(part)
		if part != "" && !seen[part] {
			seen[part] = true
			parts = append(parts, part)
		}
	}
	return strings.Join(parts, "; ")
}

// rejectAttrs are the log attributes of a rejection: the peer, the failed
// rules' names (an array) and the reasons.
func rejectAttrs(rej *secnet.RejectError) []any {
	return failureAttrs(peerAttr(&rej.Peer), rej)
}

// serverAttrs are the log attributes of an upstream server that failed
// the upstream rules.
func serverAttrs(rej *secnet.RejectError) []any {
	return failureAttrs(identityAttr("server", &rej.Peer), rej)
}

func failureAttrs(who slog.Attr, rej *secnet.RejectError) []any {
	names := make([]string, len(rej.Failures))
	reasons := make([]string, len(rej.Failures))
	for i, f := range rej.Failures {
		names[i] = f.Rule
		reasons[i] = f.Error()
	}
	return []any{who, slog.Any("failed", names), slog.String("reason", strings.Join(reasons, "; "))}
}

// userName returns the name of user uid, or "" when it has none.
func userName(uid int) string {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return ""
	}
	return u.Username
}

// loadPolicy loads the policy file named by a --policy flag, or returns
// nil for an empty name.
func loadPolicy(name string) (*policy.Policy, error) {
	if name == "" {
		return nil, nil
	}
	return policy.Load(name)
}
