package policy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/secnet/secnet"
)

// Policy is a policy file, decoded. A Policy is immutable and safe for
// concurrent use.
type Policy struct {
	rules  []secnet.Rule
	router *Router // of the [[route]] tables, or nil

	// While decoding: the [[route]] tables and the [http] table.
	routeTables   []routeTable
	versionPrefix string
	httpTable     *value
	// A new part of the format adds its field here (e.g. the routes of
	// an HTTP proxy) and its top-level key to sections.
}

// sections maps each top-level key of a policy file to the function that
// decodes its value into the Policy being built. To add a table such as
// [[route]] or a key such as a secret's file, add an entry here and a
// field to Policy; a key that is not in this map is an error.
var sections = map[string]func(pol *Policy, v value) error{
	"rule":  decodeRules,
	"route": decodeRoutes,
	"http":  decodeHTTP,
}

// Rules returns the policy's rules, in the order of the file; a peer passes
// the policy when it passes every one. Pass them to secnet.Listen,
// secnet.ListenConfig, secnet.NewListener or a secnet.Dialer.
func (pol *Policy) Rules() []secnet.Rule {
	return slices.Clone(pol.rules)
}

// Check applies every rule of the policy to p and returns nil when p
// passes all of them, or a *secnet.RejectError naming every rule that
// failed. p must hold the attributes the rules need, as the Peer of a
// *secnet.SecureConn and the result of secnet.PeerOfProcess do.
func (pol *Policy) Check(p *secnet.Peer) error {
	var failed []secnet.RuleError
	for _, r := range pol.rules {
		if err := r.Check(p); err != nil {
			failed = append(failed, secnet.RuleError{Rule: r.Name(), Err: err})
		}
	}
	if failed != nil {
		return &secnet.RejectError{Peer: *p, Failures: failed}
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

// Error reports why a policy file cannot be used, and where.
type Error struct {
	// File is the name of the policy file, when known (Load sets it, and
	// Parse sets the name it is given).
	File string
	// Line is the line of the file the problem is on, counting from 1.
	Line int
	// Key is the dotted path of the key concerned, e.g. "rule.anyof.user",
	// or empty when the problem is not with one key (most TOML syntax
	// errors).
	Key string
	// Err is the problem.
	Err error
}

// Error formats the error as "FILE:LINE: key KEY: problem", or
// "line LINE: key KEY: problem" when the file is not known.
func (e *Error) Error() string {
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
func (e *Error) Unwrap() error { return e.Err }

// MaxSize is the size of the largest policy file Parse and Load accept, in
// bytes.
const MaxSize = 1 << 20

// Load reads and decodes the policy file at path (see Parse). Errors in
// the file are *Error with File set to path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads a policy from r; name is the file's name for errors, or
// empty. Decoding is strict: anything that is not TOML, an unknown key, a
// value of the wrong type, a user or group that does not exist, a program
// path that is relative or names no file, an empty table and a policy
// without rules are errors, reported as an *Error naming the line and the
// key. A policy that lets every local process in says so with anyone =
// true; it is never the result of an empty file.
//
// User and group names are checked when the policy is decoded and
// resolved again, through a cache, when peers are checked (see
// secnet.User). Program paths are resolved through symlinks when the
// policy is decoded (see secnet.Program).
func Parse(r io.Reader, name string) (*Policy, error) {
	pol, err := parse(r)
	var pe *Error
	if errors.As(err, &pe) {
		pe.File = name
	}
	return pol, err
}

func parse(r io.Reader) (*Policy, error) {
	src, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxSize {
		return nil, &Error{Line: 1, Err: fmt.Errorf("the policy is larger than %d bytes", MaxSize)}
	}
	doc, err := decode(src)
	if err != nil {
		return nil, err
	}
	root := table{value: value{v: doc.root, doc: doc, line: 1}, m: doc.root}
	pol := new(Policy)
	for _, key := range root.keys() {
		section, ok := sections[key]
		if !ok {
			return nil, root.get(key).errorf("unknown key: a policy holds %s and nothing else", sectionNames())
		}
		if err := section(pol, root.get(key)); err != nil {
			return nil, err
		}
	}
	if err := pol.buildRouter(); err != nil {
		return nil, err
	}
	if len(pol.rules) == 0 {
		return nil, &Error{Line: 1, Key: "rule", Err: errors.New(
			"the policy has no rules; to let every local process in, say so: [[rule]] anyone = true")}
	}
	return pol, nil
}

// sectionNames describes the keys of sections, for errors.
func sectionNames() string {
	return "[[rule]] tables, [[route]] tables and an [http] table"
}

// decodeRules decodes the [[rule]] tables.
func decodeRules(pol *Policy, v value) error {
	tables, err := v.tables()
	if err != nil {
		return err
	}
	for _, t := range tables {
		rs, err := tableRules(t)
		if err != nil {
			return err
		}
		pol.rules = append(pol.rules, rs...)
	}
	return nil
}
