package secnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A Rule is one check of a peer's identity. Build rules with the functions
// of this package (UID, Program, AnyOf, RuleFunc, ...) and give them to
// Listen, NewListener or (*ListenConfig).Listen, which require every rule to
// pass. A Rule is a small immutable value, safe to share between listeners
// and goroutines. The zero Rule is invalid.
//
// Each rule declares which parts of the identity it needs, so a listener
// reads only those: a policy of UID rules never touches /proc.
//
// A rule that cannot decide because part of the identity could not be read
// fails; so does Not of such a rule. Rules never fail open.
type Rule struct {
	name  string                                   // short name, for errors and logs: "uid"
	desc  string                                   // the rule with its arguments: "uid(0, 1000)"
	need  attrs                                    // what the rule and its children read
	check func(*Peer) error                        // a leaf's check; nil for a combinator
	eval  func(e *evaluation, exact bool) error    // a combinator's evaluation
	hs    func(context.Context, *SecureConn) error // a handshake rule: talks to the peer (handshake.go)
	err   error                                    // why the rule could not be built

	// ids: the rule decides on user or group ids, which only mean what
	// they say in the listener's user namespace: Not of it needs the
	// peer there (see Not).
	ids bool
}

// Name returns the rule's short name, used in errors and logs: "uid",
// "program", "anyof", or the name given to RuleFunc.
func (r Rule) Name() string { return r.name }

// String returns the rule with its arguments, e.g. "uid(0, 1000)".
func (r Rule) String() string { return r.desc }

// Err returns the error met while building the rule (a relative or missing
// program path, a directory or a file that is not executable given to
// Program, a user or group name that does not exist, an empty list, ...),
// or nil. Listen refuses rules with an
// error.
func (r Rule) Err() error {
	if r.check == nil && r.eval == nil {
		return errors.New("secnet: zero Rule (build rules with the functions of package secnet)")
	}
	return r.err
}

// Check applies the rule to p and returns nil when the peer passes, or the
// reason it does not. Check reads nothing: p must hold the attributes the
// rule needs, as the Peer of a *SecureConn does.
func (r Rule) Check(p *Peer) error {
	if err := r.Err(); err != nil {
		return err
	}
	return (&evaluation{p: p}).run(r, true)
}

// unknownError marks a failure because the identity could not be read, as
// opposed to an identity that does not match. Not must not turn it into a
// pass.
type unknownError struct{ err error }

func (e *unknownError) Error() string { return e.err.Error() }
func (e *unknownError) Unwrap() error { return e.err }

// isUnknown reports whether err says the peer's identity could not be
// decided on: an attribute could not be read, or a rule panicked.
func isUnknown(err error) bool {
	switch err.(type) {
	case *unknownError, *PanicError:
		return true
	}
	return false
}

// leaf builds a rule that needs the attributes in need and fails, without
// calling check, when they could not be read.
func leaf(name, desc string, need attrs, check func(*Peer) error) Rule {
	need |= attrCred
	return Rule{name: name, desc: desc, need: need, check: func(p *Peer) error {
		if err := p.need(need); err != nil {
			return &unknownError{err}
		}
		return check(p)
	}}
}

// idLeaf is leaf for a rule on the peer's user or group ids.
func idLeaf(name, desc string, need attrs, check func(*Peer) error) Rule {
	r := leaf(name, desc, need, check)
	r.ids = true
	return r
}

// invalid builds a rule that could not be built.
func invalid(name string, err error) Rule {
	err = fmt.Errorf("rule %s: %w", name, err)
	return Rule{name: name, desc: name + "(invalid)", err: err, check: func(*Peer) error { return err }}
}

// Anyone passes every peer whose credentials can be read. A listener
// needs at least one rule; Anyone says explicitly that any local process
// may connect.
func Anyone() Rule {
	return leaf("anyone", "anyone()", attrCred, func(*Peer) error { return nil })
}

// UID passes a peer whose effective user id is one of ids. A uid that has
// no mapping in the listener's user namespace (see Peer.UnmappedIDs)
// passes only when ids names the overflow id itself.
func UID(ids ...int) Rule {
	if len(ids) == 0 {
		return invalid("uid", errors.New("no user ids given"))
	}
	ids = slices.Clone(ids)
	return idLeaf("uid", "uid("+joinInts(ids, ", ")+")", attrCred, func(p *Peer) error {
		if slices.Contains(ids, p.UID) {
			return nil
		}
		if p.ovf.isUID(p.UID) {
			return unmappedError("uid", p.UID)
		}
		return fmt.Errorf("peer uid %d is not %s", p.UID, orList(intStrings(ids)))
	})
}

// GID passes a peer whose effective primary group id is one of ids.
// Supplementary groups do not count; see InGroup. An unmapped gid passes
// only when ids names the overflow id itself, as for UID.
func GID(ids ...int) Rule {
	if len(ids) == 0 {
		return invalid("gid", errors.New("no group ids given"))
	}
	ids = slices.Clone(ids)
	return idLeaf("gid", "gid("+joinInts(ids, ", ")+")", attrCred, func(p *Peer) error {
		if slices.Contains(ids, p.GID) {
			return nil
		}
		if p.ovf.isGID(p.GID) {
			return unmappedError("gid", p.GID)
		}
		return fmt.Errorf("peer primary gid %d is not %s", p.GID, orList(intStrings(ids)))
	})
}

// InGroup passes a peer that holds one of gids as its primary or as a
// supplementary group. An unmapped gid passes only when gids names the
// overflow id itself, as for UID.
func InGroup(gids ...int) Rule {
	if len(gids) == 0 {
		return invalid("ingroup", errors.New("no group ids given"))
	}
	gids = slices.Clone(gids)
	return idLeaf("ingroup", "ingroup("+joinInts(gids, ", ")+")", attrCred|attrGroups, func(p *Peer) error {
		for _, g := range gids {
			if p.hasGroup(g) {
				return nil
			}
		}
		if g, ok := p.unmappedGID(); ok {
			return unmappedError("gid", g)
		}
		return fmt.Errorf("peer (gid %d, supplementary groups %v) is in none of the groups %s",
			p.GID, p.Groups, orList(intStrings(gids)))
	})
}

// User passes a peer whose effective user id is that of one of the named
// users. Names are resolved when a peer is checked, through a cache with a
// bounded lifetime (see the package documentation), so that changes to the
// user database are seen without a lookup per connection. A name that does
// not exist when the rule is built makes it invalid (see Rule.Err), as in a
// policy file; one removed later matches no one. A name never matches a
// uid that has no mapping in the listener's user namespace, even when it
// is the name of the overflow id (User("nobody")): see Peer.UnmappedIDs.
func User(names ...string) Rule {
	if len(names) == 0 {
		return invalid("user", errors.New("no user names given"))
	}
	if err := checkNames("user", names); err != nil {
		return invalid("user", err)
	}
	names = slices.Clone(names)
	return idLeaf("user", "user("+strings.Join(names, ", ")+")", attrCred, func(p *Peer) error {
		if p.ovf.isUID(p.UID) {
			return unmappedError("uid", p.UID)
		}
		return matchNames(names, "user", p.UID, lookupCache.uid, func(id int) bool { return id == p.UID })
	})
}

// Group passes a peer that holds one of the named groups as its primary or
// as a supplementary group. Names are resolved as for User, and as for
// User never match a gid that has no mapping in the listener's user
// namespace.
func Group(names ...string) Rule {
	if len(names) == 0 {
		return invalid("group", errors.New("no group names given"))
	}
	if err := checkNames("group", names); err != nil {
		return invalid("group", err)
	}
	names = slices.Clone(names)
	return idLeaf("group", "group("+strings.Join(names, ", ")+")", attrCred|attrGroups, func(p *Peer) error {
		err := matchNames(names, "group", p.GID, lookupCache.gid, func(id int) bool {
			return !p.ovf.isGID(id) && p.hasGroup(id)
		})
		if g, ok := p.unmappedGID(); ok && err != nil && !isUnknown(err) {
			return unmappedError("gid", g)
		}
		return err
	})
}

// checkNames is checkName of each name.
func checkNames(what string, names []string) error {
	for _, n := range names {
		if err := checkName(what, n); err != nil {
			return err
		}
	}
	return nil
}

// matchNames resolves each name to an id and passes when match accepts
// one. A lookup that failed for another reason than an unknown name makes
// the result unknown rather than a mismatch.
func matchNames(list []string, kind string, have int, resolve func(string) (int, error), match func(int) bool) error {
	var unknown []string
	var failed error
	for _, n := range list {
		id, err := resolve(n)
		switch {
		case err == nil && match(id):
			return nil
		case err != nil && isUnknownName(err):
			unknown = append(unknown, n)
		case err != nil:
			failed = err
		}
	}
	if failed != nil {
		return &unknownError{fmt.Errorf("looking up %s names: %w", kind, failed)}
	}
	what := "uid"
	if kind == "group" {
		what = "groups"
	}
	msg := fmt.Sprintf("peer (%s %d) is not %s %s", what, have, kind, orList(list))
	if len(unknown) > 0 {
		msg += fmt.Sprintf(" (no %s named %s exists)", kind, orList(unknown))
	}
	return errors.New(msg)
}

// SameUser passes a peer whose effective uid is the effective uid of this
// process, taken when the rule is built.
func SameUser() Rule {
	uid := os.Geteuid()
	return idLeaf("sameuser", fmt.Sprintf("sameuser(uid %d)", uid), attrCred, func(p *Peer) error {
		if p.ovf.isUID(p.UID) {
			return unmappedError("uid", p.UID)
		}
		if p.UID == uid {
			return nil
		}
		return fmt.Errorf("peer uid %d is not this process's uid %d", p.UID, uid)
	})
}

// Label passes a peer whose LSM label (SO_PEERSEC) matches one of the glob
// patterns. In a pattern, '*' matches any run of characters ('/' included),
// '?' any single character, and '\' makes the next character literal. A
// peer without a label (no security module labels sockets) passes only a
// pattern that matches the empty string.
func Label(patterns ...string) Rule {
	if len(patterns) == 0 {
		return invalid("label", errors.New("no patterns given"))
	}
	for _, pat := range patterns {
		if err := validGlob(pat); err != nil {
			return invalid("label", err)
		}
	}
	patterns = slices.Clone(patterns)
	return leaf("label", "label("+strings.Join(patterns, ", ")+")", attrCred|attrLabel, func(p *Peer) error {
		for _, pat := range patterns {
			if globMatch(pat, p.Label) {
				return nil
			}
		}
		if p.Label == "" {
			return fmt.Errorf("peer has no security label (no LSM labels sockets here), which matches none of %s", orList(patterns))
		}
		return fmt.Errorf("peer label %q matches none of %s", p.Label, orList(patterns))
	})
}

// RuleFunc makes a rule of a function. The function sees the whole
// identity but Peer.ProgramSHA256, which is read only for ProgramDigest
// and (*SecureConn).ProgramSHA256; if any part of it cannot be read, the
// rule fails without calling fn. fn returns nil to pass the peer, or the
// reason it fails. Not treats any error of fn as "does not match". fn must be safe for
// concurrent use. If fn panics, the peer fails, under Not as well, with a
// *PanicError that holds the panic value and the stack, and the listener
// goes on.
func RuleFunc(name string, fn func(p *Peer) error) Rule {
	if name == "" || fn == nil {
		return invalid("func", errors.New("RuleFunc needs a name and a function"))
	}
	return leaf(name, name+"()", attrAll, func(p *Peer) (err error) {
		returned := false
		defer recoverRule(name, &err, &returned)
		err = fn(p)
		returned = true
		return err
	})
}

// AllOf passes a peer that passes every rule; its reason lists every rule
// that failed. A listener evaluates the rules that read the least first
// and skips the others once one has failed (see the package
// documentation); the reason then names the rules it did not evaluate.
func AllOf(rules ...Rule) Rule {
	rules = slices.Clone(rules)
	order := byCost(rules)
	return combine("allof", rules, func(e *evaluation, exact bool) error {
		return e.allOf(rules, order, exact)
	})
}

// AnyOf passes a peer that passes at least one of rules. A listener
// evaluates the rules that read the least first and stops at the first
// that passes.
func AnyOf(rules ...Rule) Rule {
	rules = slices.Clone(rules)
	order := byCost(rules)
	return combine("anyof", rules, func(e *evaluation, exact bool) error {
		return e.anyOf(rules, order, exact)
	})
}

// Not passes a peer that fails r because its identity does not match r.
// A peer whose identity r could not read fails Not(r) too.
//
// Deny-lists on ids are weaker than allow-lists. A user with subordinate
// ids (/etc/subuid, /etc/subgid: the default for new users on Debian,
// Ubuntu and Fedora) can enter a user namespace of its own and connect as
// one of those ids, or with its supplementary groups dropped, which
// escapes Not(UID(x)) or Not(InGroup(g)) but passes no allow-list. So when
// r decides on ids (UID, GID, InGroup, User, Group, SameUser, or a
// combination holding one), Not(r) also reads the peer's namespaces and
// passes only a peer in the listener's user namespace: for any other, and
// when they cannot be read (a listener without ptrace-read access to the
// peer, as for another user's process unless it is root with
// CAP_SYS_PTRACE), the answer is unknown and the peer fails.
func Not(r Rule) Rule {
	if err := r.Err(); err != nil {
		return invalid("not", err)
	}
	if r.hs != nil {
		return invalid("not", errNestedHandshake(r))
	}
	need := r.need
	var own Namespaces
	var ownErr error
	if r.ids {
		need |= attrNamespaces
		own, ownErr = OwnNamespaces()
	}
	return Rule{name: "not", desc: "not(" + r.desc + ")", need: need, ids: r.ids, eval: func(e *evaluation, _ bool) error {
		err := e.run(r, true)
		switch {
		case err == nil:
			return fmt.Errorf("peer matches %s", r.desc)
		case isUnknown(err):
			return err
		case r.ids:
			// Only now, when r did not match, is the user namespace
			// needed.
			if e.id != nil {
				e.id.read(e.ctx, attrNamespaces)
			}
			return sameUserNamespace(e.p, own, ownErr, r.desc)
		}
		return nil
	}}
}

// sameUserNamespace returns nil when the peer is in the listener's user
// namespace (own), where its ids are the ids a rule on ids names, and an
// unknown result otherwise.
func sameUserNamespace(p *Peer, own Namespaces, ownErr error, desc string) error {
	if ownErr != nil {
		return &unknownError{fmt.Errorf("a deny rule on ids needs the listener's user namespace: %w", ownErr)}
	}
	if err := p.need(attrNamespaces); err != nil {
		return &unknownError{fmt.Errorf("a deny rule on ids needs the peer's user namespace: %w", err)}
	}
	if p.Namespaces.User != own.User {
		return &unknownError{fmt.Errorf("peer runs in another user namespace (user:[%d], the listener's is user:[%d]), where its ids may be subordinate ids or its groups dropped: not matching %s proves nothing there (use an allow-list)",
			p.Namespaces.User, own.User, desc)}
	}
	return nil
}

func combine(name string, rules []Rule, eval func(*evaluation, bool) error) Rule {
	if len(rules) == 0 {
		return invalid(name, errors.New("no rules given"))
	}
	descs := make([]string, len(rules))
	var need attrs
	var ids bool
	for i, r := range rules {
		if err := r.Err(); err != nil {
			return invalid(name, err)
		}
		if r.hs != nil {
			return invalid(name, errNestedHandshake(r))
		}
		need |= r.need
		ids = ids || r.ids
		descs[i] = r.desc
	}
	return Rule{name: name, desc: name + "(" + strings.Join(descs, ", ") + ")", need: need, ids: ids, eval: eval}
}

func intStrings(ids []int) []string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return s
}

func joinInts(ids []int, sep string) string {
	return strings.Join(intStrings(ids), sep)
}

// orList formats a list for a sentence: "a", "a or b", "one of a, b, c".
func orList(items []string) string {
	switch len(items) {
	case 0:
		return "(nothing)"
	case 1:
		return items[0]
	case 2:
		return items[0] + " or " + items[1]
	}
	return "one of " + strings.Join(items, ", ")
}
