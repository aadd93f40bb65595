package secnet

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Policy is a set of rules read from a policy file, so that the rules of a
// listener can live in a file an operator edits rather than in code:
//
//	pol, err := secnet.LoadPolicy("/etc/myd/policy.toml")
//	if err != nil {
//		log.Fatal(err) // e.g. "/etc/myd/policy.toml:7: key rule.user: no user named "bob" exists"
//	}
//	ln, err := secnet.Listen("unix", "/run/myd.sock", pol.Rules()...)
//
// A policy file is TOML. Each [[rule]] table holds one or more rules, one
// per key, and a peer must pass every rule of every table:
//
//	# Members of group docker running the docker client, or root.
//	[[rule]]
//	anyof = [{ uid = 0 }, { group = "docker", program = "/usr/bin/docker" }]
//
// The keys are the rules of this package: uid, gid and ingroup (an integer
// or an array of them), user and group (a name or an array of names),
// program (an absolute path or an array of them), label (a pattern or an
// array of them), sameuser = true and anyone = true, and the combinators
// allof and anyof (an array of tables; a table of several keys passes when
// all of them pass) and not (a table). docs/policy.md describes the format
// in full. A Policy is immutable and safe for concurrent use.
type Policy struct {
	rules []Rule
}

// Rules returns the policy's rules, in the order of the file; a peer passes
// the policy when it passes every one. Pass them to Listen, ListenConfig,
// NewListener or Dialer.
func (pol *Policy) Rules() []Rule {
	return slices.Clone(pol.rules)
}

// Check applies every rule of the policy to p and returns nil when p
// passes all of them, or a *RejectError naming every rule that failed. p
// must hold the attributes the rules need, as the Peer of a *SecureConn
// and the result of PeerOfProcess do.
func (pol *Policy) Check(p *Peer) error {
	var failed []RuleError
	for _, r := range pol.rules {
		if err := r.Check(p); err != nil {
			failed = append(failed, RuleError{Rule: r.Name(), Err: err})
		}
	}
	if failed != nil {
		return &RejectError{Peer: *p, Failures: failed}
	}
	return nil
}

// String returns the rules, one per line, e.g. "uid(0, 1000)\nprogram(/usr/bin/myctl)".
func (pol *Policy) String() string {
	descs := make([]string, len(pol.rules))
	for i, r := range pol.rules {
		descs[i] = r.String()
	}
	return strings.Join(descs, "\n")
}

// PolicyError reports why a policy file cannot be used, and where.
type PolicyError struct {
	// File is the name of the policy file, when known (LoadPolicy sets it).
	File string
	// Line is the line of the file the problem is on, counting from 1.
	Line int
	// Key is the dotted path of the key concerned, e.g. "rule.anyof.user",
	// or empty when the problem is not with a key (a syntax error between
	// keys).
	Key string
	// Err is the problem.
	Err error
}

// Error formats the error as "FILE:LINE: key KEY: problem", or
// "line LINE: key KEY: problem" when the file is not known.
func (e *PolicyError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	} else {
		b.WriteString("line ")
	}
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString("key ")
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the problem.
func (e *PolicyError) Unwrap() error { return e.Err }

// maxPolicySize bounds the size of a policy file.
const maxPolicySize = 1 << 20

// LoadPolicy reads and parses the policy file at path (see ParsePolicy).
// Errors in the file are *PolicyError with File set to path.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pol, err := ParsePolicy(f)
	var pe *PolicyError
	if errors.As(err, &pe) {
		pe.File = path
	}
	return pol, err
}

// ParsePolicy reads a policy (see Policy) from r. Decoding is strict: a
// syntax error, an unknown key, a value of the wrong type, a user or group
// that does not exist, a program path that is relative or names no file,
// an empty table and a policy without rules are errors, reported as a
// *PolicyError naming the line and the key. A policy that lets every
// local process in says so with anyone = true; it is never the result of
// an empty file.
//
// User and group names are checked when the policy is parsed and resolved
// again, through a cache, when peers are checked (see User). Program paths
// are resolved through symlinks when the policy is parsed (see Program).
func ParsePolicy(r io.Reader) (*Policy, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxPolicySize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPolicySize {
		return nil, &PolicyError{Line: 1, Err: fmt.Errorf("the policy is larger than %d bytes", maxPolicySize)}
	}
	root, err := parseTOML(string(b))
	if err != nil {
		return nil, err
	}
	var rules []Rule
	for _, key := range root.keys {
		v := root.values[key]
		if key != "rule" {
			return nil, &PolicyError{Line: v.line, Key: key, Err: errors.New("unknown key: a policy holds [[rule]] tables and nothing else")}
		}
		tables, err := policyValue{v: v, key: key}.tables()
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			rs, err := t.rules()
			if err != nil {
				return nil, err
			}
			rules = append(rules, rs...)
		}
	}
	if len(rules) == 0 {
		return nil, &PolicyError{Line: 1, Key: "rule", Err: errors.New(
			"the policy has no rules; to let every local process in, say so: [[rule]] anyone = true")}
	}
	return &Policy{rules: rules}, nil
}

// ruleKind is how one policy key becomes a Rule. To add a rule to the
// policy language, add one entry to policyKinds.
type ruleKind struct {
	// want describes the value the key takes, for errors.
	want string
	// build makes the rule. Errors that are not *PolicyError are
	// reported at the key's line.
	build func(v policyValue) (Rule, error)
}

// policyKinds maps each policy key to its rule. It is set once by init
// (the combinators refer back to it) and never modified.
var policyKinds map[string]ruleKind

func init() {
	policyKinds = map[string]ruleKind{
		"anyone":        {"true", flagRule(Anyone)},
		"sameuser":      {"true", flagRule(SameUser)},
		"uid":           {"a user id or an array of them", idRule(UID)},
		"gid":           {"a group id or an array of them", idRule(GID)},
		"ingroup":       {"a group id or an array of them", idRule(InGroup)},
		"user":          {"a user name or an array of them", nameRule(User, "user")},
		"group":         {"a group name or an array of them", nameRule(Group, "group")},
		"program":       {"an absolute path or an array of them", programRule},
		"label":         {"a label pattern or an array of them", stringsRule(Label)},
		"programdigest": {"a SHA-256 digest (64 hex digits, optionally sha256:) or an array of them", stringsRule(ProgramDigest)},
		"unit":          {"a systemd unit name or an array of them", stringsRule(Unit)},
		"cgroup":        {"a cgroup path pattern or an array of them", stringsRule(Cgroup)},
		"onhost":        {"true", flagRule(OnHost)},
		"samenamespaces": {"true (all namespaces) or an array of kinds: user, pid, mnt, net, cgroup, ipc, uts", func(v policyValue) (Rule, error) {
			if v.kind(kindBool) == nil {
				return flagRule(func() Rule { return SameNamespaces() })(v)
			}
			s, err := v.strings()
			if err != nil {
				return Rule{}, err
			}
			kinds := make([]NamespaceKind, len(s))
			for i, k := range s {
				kinds[i] = NamespaceKind(k)
			}
			return SameNamespaces(kinds...), nil
		}},
		"allof": {"an array of tables", listRule(AllOf)},
		"anyof": {"an array of tables", listRule(AnyOf)},
		"not": {"a table", func(v policyValue) (Rule, error) {
			t, err := v.table()
			if err != nil {
				return Rule{}, err
			}
			r, err := t.rule()
			if err != nil {
				return Rule{}, err
			}
			return Not(r), nil
		}},
	}
}

func policyKeys() string {
	keys := make([]string, 0, len(policyKinds))
	for k := range policyKinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// stringsRule builds a rule that takes a string or an array of strings.
func stringsRule(fn func(...string) Rule) func(policyValue) (Rule, error) {
	return func(v policyValue) (Rule, error) {
		s, err := v.strings()
		if err != nil {
			return Rule{}, err
		}
		return fn(s...), nil
	}
}

func flagRule(fn func() Rule) func(policyValue) (Rule, error) {
	return func(v policyValue) (Rule, error) {
		if err := v.kind(kindBool); err != nil {
			return Rule{}, err
		}
		if !v.v.flag {
			return Rule{}, v.errorf("false is not a rule: remove the key, or use not = { %s = true }", lastKey(v.key))
		}
		return fn(), nil
	}
}

func idRule(fn func(...int) Rule) func(policyValue) (Rule, error) {
	return func(v policyValue) (Rule, error) {
		ids, err := v.ids()
		if err != nil {
			return Rule{}, err
		}
		return fn(ids...), nil
	}
}

// nameRule checks that each name exists (exists returns nil) before it
// builds the rule.
func nameRule(fn func(...string) Rule, what string) func(policyValue) (Rule, error) {
	return func(v policyValue) (Rule, error) {
		names, err := v.strings()
		if err != nil {
			return Rule{}, err
		}
		for i, n := range names {
			if err := checkName(what, n); err != nil {
				return Rule{}, v.item(i).errorf("%w", err)
			}
		}
		return fn(names...), nil
	}
}

func programRule(v policyValue) (Rule, error) {
	paths, err := v.strings()
	if err != nil {
		return Rule{}, err
	}
	for i, p := range paths {
		if _, err := programPath(p); err != nil {
			return Rule{}, v.item(i).errorf("program %w", err)
		}
	}
	return Program(paths...), nil
}

func listRule(fn func(...Rule) Rule) func(policyValue) (Rule, error) {
	return func(v policyValue) (Rule, error) {
		tables, err := v.tables()
		if err != nil {
			return Rule{}, err
		}
		rules := make([]Rule, len(tables))
		for i, t := range tables {
			if rules[i], err = t.rule(); err != nil {
				return Rule{}, err
			}
		}
		return fn(rules...), nil
	}
}

// policyValue is a value of a policy file with the path of its key.
type policyValue struct {
	v   *tomlValue
	key string
}

func (v policyValue) errorf(format string, args ...any) error {
	return &PolicyError{Line: v.v.line, Key: v.key, Err: fmt.Errorf(format, args...)}
}

// item returns element i of an array value, or v itself if it is not an
// array (a single value given where a list is accepted).
func (v policyValue) item(i int) policyValue {
	if v.v.kind == kindArray {
		return policyValue{v: v.v.items[i], key: v.key}
	}
	return v
}

// kind checks that the value has type k.
func (v policyValue) kind(k tomlKind) error {
	if v.v.kind != k {
		return v.errorf("want %s, got %s", policyKinds[lastKey(v.key)].want, v.v.kind)
	}
	return nil
}

// list returns the elements of a value that may be one value of type k or
// a non-empty array of them.
func (v policyValue) list(k tomlKind) ([]*tomlValue, error) {
	if v.v.kind != kindArray {
		if err := v.kind(k); err != nil {
			return nil, err
		}
		return []*tomlValue{v.v}, nil
	}
	if len(v.v.items) == 0 {
		return nil, v.errorf("empty array: give at least one value (%s)", policyKinds[lastKey(v.key)].want)
	}
	for i, it := range v.v.items {
		if it.kind != k {
			return nil, v.item(i).errorf("want %s in the array, got %s", k, it.kind)
		}
	}
	return v.v.items, nil
}

func (v policyValue) strings() ([]string, error) {
	items, err := v.list(kindString)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.str
	}
	return out, nil
}

func (v policyValue) ids() ([]int, error) {
	items, err := v.list(kindInt)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(items))
	for i, it := range items {
		// 4294967295 is (uid_t)-1, which no process has.
		if it.num < 0 || it.num >= math.MaxUint32 {
			return nil, v.item(i).errorf("%d is not a valid id (0 to %d)", it.num, uint32(math.MaxUint32-1))
		}
		out[i] = int(it.num)
	}
	return out, nil
}

// table returns the value as a rule table.
func (v policyValue) table() (ruleTable, error) {
	if err := v.kind(kindTable); err != nil {
		return ruleTable{}, err
	}
	return ruleTable{t: v.v.table, line: v.v.line, key: v.key}, nil
}

// tables returns the value, a non-empty array of tables, as rule tables.
func (v policyValue) tables() ([]ruleTable, error) {
	if v.v.kind != kindArray {
		return nil, v.errorf("want an array of tables ([[%s]] headers or [{...}, ...]), got %s", v.key, v.v.kind)
	}
	if len(v.v.items) == 0 {
		return nil, v.errorf("empty array: give at least one table")
	}
	out := make([]ruleTable, len(v.v.items))
	for i, it := range v.v.items {
		if it.kind != kindTable {
			return nil, v.item(i).errorf("want a table in the array, got %s", it.kind)
		}
		out[i] = ruleTable{t: it.table, line: it.line, key: v.key}
	}
	return out, nil
}

// ruleTable is a table of rules: each key is one rule.
type ruleTable struct {
	t    *tomlTable
	line int
	key  string
}

// rules returns one rule per key of the table.
func (t ruleTable) rules() ([]Rule, error) {
	if len(t.t.keys) == 0 {
		return nil, &PolicyError{Line: t.line, Key: t.key, Err: fmt.Errorf("empty table: a rule table needs at least one of %s", policyKeys())}
	}
	out := make([]Rule, len(t.t.keys))
	for i, k := range t.t.keys {
		v := policyValue{v: t.t.values[k], key: joinKey(t.key, k)}
		kind, ok := policyKinds[k]
		if !ok {
			return nil, v.errorf("unknown rule %q (the rules are %s)", k, policyKeys())
		}
		r, err := kind.build(v)
		if err == nil {
			err = r.Err()
		}
		if err != nil {
			var pe *PolicyError
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, v.errorf("%w", err)
		}
		out[i] = r
	}
	return out, nil
}

// rule returns the table as one rule: its only rule, or all of them.
func (t ruleTable) rule() (Rule, error) {
	rs, err := t.rules()
	if err != nil {
		return Rule{}, err
	}
	if len(rs) == 1 {
		return rs[0], nil
	}
	return AllOf(rs...), nil
}

func lastKey(path string) string {
	return path[strings.LastIndexByte(path, '.')+1:]
}
