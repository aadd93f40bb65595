package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/secnet/secnet"
)

// ruleKind is how one key of a rule table becomes a secnet.Rule. To add a
// rule to the policy language, add one entry to ruleKinds.
type ruleKind struct {
	// want describes the value the key takes, for errors.
	want string
	// build makes the rule. Errors that are not *Error are reported at
	// the key's line.
	build func(v value) (secnet.Rule, error)
}

// ruleKinds maps each key of a rule table to its rule. It is set once by
// init (the combinators refer back to it) and never modified.
var ruleKinds map[string]ruleKind

func init() {
	ruleKinds = map[string]ruleKind{
		"anyone":        {"true", flagRule(secnet.Anyone)},
		"sameuser":      {"true", flagRule(secnet.SameUser)},
		"uid":           {"a user id or an array of them", idRule(secnet.UID)},
		"gid":           {"a group id or an array of them", idRule(secnet.GID)},
		"ingroup":       {"a group id or an array of them", idRule(secnet.InGroup)},
		"user":          {"a user name or an array of them", checkedRule(secnet.User)},
		"group":         {"a group name or an array of them", checkedRule(secnet.Group)},
		"program":       {"an absolute path or an array of them", checkedRule(secnet.Program)},
		"label":         {"a label pattern or an array of them", stringsRule(secnet.Label)},
		"programdigest": {"a SHA-256 digest (64 hex digits, optionally sha256:) or an array of them", stringsRule(secnet.ProgramDigest)},
		"unit":          {"a systemd unit name or an array of them", stringsRule(secnet.Unit)},
		"cgroup":        {"a cgroup path pattern or an array of them", stringsRule(secnet.Cgroup)},
		"onhost":        {"true", flagRule(secnet.OnHost)},
		"sharedsecret":  {"the absolute path of a key file or an array of them", sharedSecretRule},
		"samenamespaces": {"true (all namespaces) or an array of kinds: user, pid, mnt, net, cgroup, ipc, uts", func(v value) (secnet.Rule, error) {
			if _, ok := v.v.(bool); ok {
				return flagRule(func() secnet.Rule { return secnet.SameNamespaces() })(v)
			}
			s, err := v.strings()
			if err != nil {
				return secnet.Rule{}, err
			}
			kinds := make([]secnet.NamespaceKind, len(s))
			for i, k := range s {
				kinds[i] = secnet.NamespaceKind(k)
			}
			return secnet.SameNamespaces(kinds...), nil
		}},
		"allof": {"an array of tables", listRule(secnet.AllOf)},
		"anyof": {"an array of tables", listRule(secnet.AnyOf)},
		"not": {"a table", func(v value) (secnet.Rule, error) {
			t, err := v.asTable("a table")
			if err != nil {
				return secnet.Rule{}, err
			}
			r, err := tableRule(t)
			if err != nil {
				return secnet.Rule{}, err
			}
			return secnet.Not(r), nil
		}},
	}
}

// ruleKeys lists the keys of rule tables, for errors.
func ruleKeys() string {
	keys := make([]string, 0, len(ruleKinds))
	for k := range ruleKinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// rules returns one rule per key of a rule table, in the order of the
// file. Keys listed in own are not rules: the table's caller decodes them
// (a [[route]] table's match, say); every other key must be a rule, and
// there must be one at least.
func tableRules(t table, own ...string) ([]secnet.Rule, error) {
	keys := slices.DeleteFunc(t.keys(), func(k string) bool { return slices.Contains(own, k) })
	if len(keys) == 0 {
		return nil, t.errorf("empty table: a rule table needs at least one of %s", ruleKeys())
	}
	out := make([]secnet.Rule, len(keys))
	for i, k := range keys {
		v := t.get(k)
		kind, ok := ruleKinds[k]
		if !ok {
			return nil, v.errorf("unknown rule %q (the rules are %s)", k, ruleKeys())
		}
		r, err := kind.build(v)
		if err == nil {
			err = r.Err()
		}
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, v.errorf("%w", err)
		}
		out[i] = r
	}
	return out, nil
}

// rule returns a rule table as one rule: its only rule, or all of them.
func tableRule(t table) (secnet.Rule, error) {
	rs, err := tableRules(t)
	if err != nil {
		return secnet.Rule{}, err
	}
	if len(rs) == 1 {
		return rs[0], nil
	}
	return secnet.AllOf(rs...), nil
}

// stringsRule builds a rule that takes a string or an array of strings.
func stringsRule(fn func(...string) secnet.Rule) func(value) (secnet.Rule, error) {
	return func(v value) (secnet.Rule, error) {
		s, err := v.strings()
		if err != nil {
			return secnet.Rule{}, err
		}
		return fn(s...), nil
	}
}

func flagRule(fn func() secnet.Rule) func(value) (secnet.Rule, error) {
	return func(v value) (secnet.Rule, error) {
		b, ok := v.v.(bool)
		if !ok {
			return secnet.Rule{}, v.wrongType()
		}
		if !b {
			return secnet.Rule{}, v.errorf("false is not a rule: remove the key, or use not = { %s = true }", lastKey(v.key))
		}
		return fn(), nil
	}
}

func idRule(fn func(...int) secnet.Rule) func(value) (secnet.Rule, error) {
	return func(v value) (secnet.Rule, error) {
		ids, err := v.ids()
		if err != nil {
			return secnet.Rule{}, err
		}
		return fn(ids...), nil
	}
}

// checkedRule builds a rule that takes a string or an array of strings
// and checks each when it is built (secnet.User, Group and Program do): when
// the rule is invalid, the error is reported at the element that makes it
// so.
func checkedRule(fn func(...string) secnet.Rule) func(value) (secnet.Rule, error) {
	return func(v value) (secnet.Rule, error) {
		s, err := v.strings()
		if err != nil {
			return secnet.Rule{}, err
		}
		r := fn(s...)
		if r.Err() == nil {
			return r, nil
		}
		for i, x := range s {
			if err := fn(x).Err(); err != nil {
				return secnet.Rule{}, v.item(i).errorf("%s", ruleError(lastKey(v.key), x, err))
			}
		}
		return r, nil // Err reports it
	}
}

// ruleError words the error of the rule key = value for a policy file:
// "program path "sh" is not absolute" rather than "rule program: path ...".
func ruleError(key, value string, err error) string {
	if inner := errors.Unwrap(err); inner != nil {
		err = inner
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s %q: %v", key, value, pe.Err)
	}
	if key == "user" || key == "group" {
		return err.Error() // "no user named ..."
	}
	return key + " " + err.Error()
}

func listRule(fn func(...secnet.Rule) secnet.Rule) func(value) (secnet.Rule, error) {
	return func(v value) (secnet.Rule, error) {
		tables, err := v.tables()
		if err != nil {
			return secnet.Rule{}, err
		}
		rules := make([]secnet.Rule, len(tables))
		for i, t := range tables {
			if rules[i], err = tableRule(t); err != nil {
				return secnet.Rule{}, err
			}
		}
		return fn(rules...), nil
	}
}

// wrongType reports a value of the wrong type for its rule key.
func (v value) wrongType() error {
	return v.errorf("want %s, got %s", ruleKinds[lastKey(v.key)].want, typeName(v.v))
}

// list returns the elements of a value that may be one value or a
// non-empty array of them, each of which ok accepts; what names the type
// ok accepts, for errors.
func (v value) list(what string, ok func(any) bool) ([]any, error) {
	a, isArray := v.v.([]any)
	if !isArray {
		if !ok(v.v) {
			return nil, v.wrongType()
		}
		return []any{v.v}, nil
	}
	if len(a) == 0 {
		return nil, v.errorf("empty array: give at least one value (%s)", ruleKinds[lastKey(v.key)].want)
	}
	for i, x := range a {
		if !ok(x) {
			return nil, v.item(i).errorf("want %s in the array, got %s", what, typeName(x))
		}
	}
	return a, nil
}

func (v value) strings() ([]string, error) {
	items, err := v.list("a string", func(x any) bool { _, ok := x.(string); return ok })
	if err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, x := range items {
		out[i] = x.(string)
	}
	return out, nil
}

func (v value) ids() ([]int, error) {
	items, err := v.list("an integer", func(x any) bool { _, ok := x.(int64); return ok })
	if err != nil {
		return nil, err
	}
	out := make([]int, len(items))
	for i, x := range items {
		n := x.(int64)
		// 4294967295 is (uid_t)-1, which no process has.
		if n < 0 || n >= math.MaxUint32 {
			return nil, v.item(i).errorf("%d is not a valid id (0 to %d)", n, uint32(math.MaxUint32-1))
		}
		out[i] = int(n)
	}
	return out, nil
}

// tables returns the value, a non-empty array of tables, as tables.
func (v value) tables() ([]table, error) {
	a, ok := v.v.([]any)
	if !ok {
		return nil, v.errorf("want an array of tables ([[%s]] headers or [{...}, ...]), got %s", v.key, typeName(v.v))
	}
	if len(a) == 0 {
		return nil, v.errorf("empty array: give at least one table")
	}
	out := make([]table, len(a))
	for i := range a {
		it := v.item(i)
		m, ok := it.v.(map[string]any)
		if !ok {
			return nil, it.errorf("want a table in the array, got %s", typeName(it.v))
		}
		out[i] = table{value: it, m: m}
	}
	return out, nil
}

func lastKey(path string) string {
	return path[strings.LastIndexByte(path, '.')+1:]
}
