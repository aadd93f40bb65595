package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParsePolicyRules(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh:", err)
	}
	for _, tc := range []struct {
		name, src string
		want      []string // Rule.String of each rule
	}{
		{"one key", "[[rule]]\nuid = 0\n", []string{"uid(0)"}},
		{"arrays", "[[rule]]\nuid = [0, 1_000]\ngid = [ 4,\n 5, # tty\n ]\n", []string{"uid(0, 1000)", "gid(4, 5)"}},
		{"tables are and-ed", "[[rule]]\nuid = 0\n[[rule]]\ningroup = 4\n", []string{"uid(0)", "ingroup(4)"}},
		{"names", "[[rule]]\nuser = 'root'\ngroup = [\"adm\", \"tty\"]", []string{"user(root)", "group(adm, tty)"}},
		{"flags", "[[rule]]\nanyone = true\nsameuser = true\n", []string{"anyone()", "sameuser(uid " + strconv.Itoa(os.Geteuid()) + ")"}},
		{"program", "[[rule]]\nprogram = \"" + sh + "\"\n", []string{"program(" + sh + ")"}},
		{"label escapes", "[[rule]]\nlabel = \"a\\\\*\\u00e9\"\n", []string{"label(a\\*é)"}},
		{"inline anyof", "[[rule]]\nanyof = [{uid = 0}, {gid = 4, ingroup = 5}]\n", []string{"anyof(uid(0), allof(gid(4), ingroup(5)))"}},
		{"header anyof", "[[rule]]\nuid = 1\n[[rule]]\n[[rule.anyof]]\nuid = 0\n[[rule.anyof]]\ngid = 4\ningroup = 5\n",
			[]string{"uid(1)", "anyof(uid(0), allof(gid(4), ingroup(5)))"}},
		{"header goes to the last rule", "[[rule]]\nuid = 1\n[[rule]]\ngid = 2\n[rule.not]\nuid = 3\n",
			[]string{"uid(1)", "gid(2)", "not(uid(3))"}},
		{"nested headers", "[[rule]]\n[rule.not]\n[[rule.not.allof]]\nuid = 0\n[[rule.not.allof]]\n[rule.not.allof.not]\ngid = 0\n",
			[]string{"not(allof(uid(0), not(gid(0))))"}},
		{"not of several keys", "[[rule]]\nnot = { uid = 0, gid = 0 }\n", []string{"not(allof(uid(0), gid(0)))"}},
		{"array of inline rule tables", "rule = [{ uid = 0 }, { gid = 0 }]\n", []string{"uid(0)", "gid(0)"}},
		{"spaces and CRLF", "  [[ rule ]]  # comment\r\n\tuid=0\t# c\r\n", []string{"uid(0)"}},
		{"containers", "[[rule]]\nunit = \"sshd.service\"\ncgroup = [\"/system.slice/*\"]\nonhost = true\n",
			[]string{"unit(sshd.service)", "cgroup(/system.slice/*)", "onhost()"}},
		{"namespaces", "[[rule]]\nsamenamespaces = [\"net\", \"mnt\"]\n[[rule]]\nsamenamespaces = true\n",
			[]string{"samenamespaces(net, mnt)", "samenamespaces(user, pid, mnt, net, cgroup, ipc, uts)"}},
		// Valid TOML that secnet's own parser refused before go-toml
		// decoded policies, with its TOML meaning.
		{"dotted key", "[[rule]]\nnot.uid = 0\n", []string{"not(uid(0))"}},
		{"quoted key", "[[rule]]\n\"uid\" = 0\n'gid' = 1\n", []string{"uid(0)", "gid(1)"}},
		{"hex, octal and binary", "[[rule]]\nuid = [0x10, 0o10, 0b10]\n", []string{"uid(16, 8, 2)"}},
		{"multi-line string", "[[rule]]\nlabel = \"\"\"\nx\"\"\"\n", []string{"label(x)"}},
		{"literal multi-line string", "[[rule]]\nlabel = '''a\\b'''\n", []string{"label(a\\b)"}},
		// TOML 1.1, which go-toml implements.
		{"escape \\x", "[[rule]]\nlabel = \"\\x41\"\n", []string{"label(A)"}},
		{"multi-line inline table", "[[rule]]\nnot = { uid = 0,\n}\n", []string{"not(uid(0))"}},
		{"digest", "[[rule]]\nprogramdigest = \"sha256:" + strings.Repeat("aB", 32) + "\"\n",
			[]string{"programdigest(sha256:" + strings.Repeat("ab", 32) + ")"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Parse(strings.NewReader(tc.src), "")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var got []string
			for _, r := range pol.Rules() {
				got = append(got, r.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") || pol.String() != strings.Join(tc.want, "\n") {
				t.Errorf("rules = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		key       string
		msg       string
	}{
		{"empty", "", 1, "rule", "no rules"},
		{"only comments", "# nothing\n\n", 1, "rule", "anyone = true"},
		{"empty rule array", "rule = []\n", 1, "rule", "empty array"},
		{"rule not a table", "[rule]\nuid = 0\n", 1, "rule", "want an array of tables"},
		{"rule an array of ints", "rule = [1]\n", 1, "rule", "want a table in the array, got an integer"},
		{"unknown rule", "[[rule]]\nuid = 0\n\nprogramme = '/bin/sh'\n", 4, "rule.programme", `unknown rule "programme" (the rules are allof, anyof, anyone,`},
		{"unknown nested", "[[rule]]\n[[rule.anyof]]\nuidd = 0\n", 3, "rule.anyof.uidd", "unknown rule"},
		{"wrong type", "[[rule]]\ngid = true\n", 2, "rule.gid", "want a group id or an array of them, got a boolean"},
		{"wrong element type", "[[rule]]\nuid = [\n0,\n'root',\n]\n", 4, "rule.uid", "want an integer in the array, got a string"},
		{"mixed names", "[[rule]]\nuser = ['root', 0]\n", 2, "rule.user", "want a string in the array, got an integer"},
		{"unknown user", "[[rule]]\nuser = [\n'root',\n'no-such-user-sn'\n]\n", 4, "rule.user", `no user named "no-such-user-sn" exists`},
		{"unknown group", "[[rule]]\n[[rule.anyof]]\ngroup = 'no-such-group-sn'\n", 3, "rule.anyof.group", `no group named "no-such-group-sn"`},
		{"relative program", "[[rule]]\nprogram = ['/bin/sh', 'sh']\n", 2, "rule.program", `program path "sh" is not absolute`},
		{"bad digest", "[[rule]]\nuid = 0\nprogramdigest = 'abc'\n", 3, "rule.programdigest", "is not a SHA-256 digest"},
		{"bad unit", "[[rule]]\nunit = ['sshd.service', 'sshd']\n", 2, "rule.unit", `"sshd" is not the name of a unit`},
		{"bad namespace", "[[rule]]\nsamenamespaces = ['net', 'time']\n", 2, "rule.samenamespaces", `unknown namespace kind "time"`},
		{"onhost false", "[[rule]]\nonhost = false\n", 2, "rule.onhost", "false is not a rule"},
		{"missing program", "[[rule]]\nprogram = '/no/such/program'\n", 2, "rule.program", "no such file"},
		{"bad label", "[[rule]]\nlabel = 'a\\'\n", 2, "rule.label", "lone"},
		{"id too big", "[[rule]]\nuid = 4294967295\n", 2, "rule.uid", "not a valid id"},
		{"empty table", "[[rule]]\n# nothing\n[[rule]]\nuid = 0\n", 1, "rule", "empty table"},
		{"empty inline", "[[rule]]\nanyof = [{}, {uid = 0}]\n", 2, "rule.anyof", "empty table"},
		{"empty list", "[[rule]]\nuid = []\n", 2, "rule.uid", "empty array"},
		{"false", "[[rule]]\nanyone = false\n", 2, "rule.anyone", "false is not a rule"},
		{"not array", "[[rule]]\nnot = [{uid = 0}]\n", 2, "rule.not", "want a table, got an array"},
		{"anyof table", "[[rule]]\n[rule.anyof]\nuid = 0\n", 2, "rule.anyof", "want an array of tables"},
		{"top-level key", "uid = 0\n", 1, "uid", "unknown key"},
		{"float", "[[rule]]\nuid = 1e3\n", 2, "rule.uid", "want a user id or an array of them, got a floating-point number"},
		{"date", "[[rule]]\nuid = 2024-01-01\n", 2, "rule.uid", "got a date or time"},
		{"unknown key in a quoted key", "[[rule]]\n\"ui d\" = 0\n", 2, "rule.ui d", `unknown rule "ui d"`},
		{"unknown dotted key", "[[rule]]\nnot.uidd = 0\n", 2, "rule.not.uidd", `unknown rule "uidd"`},
		{"line of an inline table in an array", "[[rule]]\nanyof = [\n{uid = 0},\n{},\n]\n", 4, "rule.anyof", "empty table"},
		{"line of an array-of-tables element", "[[rule]]\n[[rule.anyof]]\nuid = 0\n[[rule.anyof]]\n[[rule.anyof]]\ngid = 0\n", 4, "rule.anyof", "empty table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Parse(strings.NewReader(tc.src), "")
			checkPolicyError(t, pol, err, tc.line, tc.key, tc.msg)
		})
	}
}

// TestParseTOMLErrors checks that what is not TOML is refused, at the
// line go-toml names. The messages are go-toml's; the key is named when
// go-toml names one.
func TestParseTOMLErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		key       string
		msg       string
	}{
		{"carriage return in a comment", "[[rule]]\nuid = 0\n# a comment\rprogram = '/no/such/program'\n", 3, "", "carriage returns are not allowed in comments"},
		{"int out of range", "[[rule]]\nuid = 99999999999999999999\n", 2, "", "too large"},
		{"duplicate key", "[[rule]]\nuid = 0\ngid = 0\nuid = 1\n", 4, "rule.uid", "already defined"},
		{"duplicate table", "[[rule]]\n[rule.not]\nuid = 0\n[rule.not]\ngid = 0\n", 4, "rule.not", "already exists"},
		{"header over inline", "[[rule]]\nnot = {uid = 0}\n[rule.not]\n", 3, "rule.not", "should be a table"},
		{"append to static array", "rule = [{uid = 0}]\n[[rule]]\ngid = 0\n", 2, "rule", "already exists as a value"},
		{"missing equals", "[[rule]]\nuid 0\n", 2, "", "expected '='"},
		{"missing value", "[[rule]]\nuid =\n", 2, "", "start of value"},
		{"bare word", "[[rule]]\nuser = root\n", 2, "", "start of value"},
		{"leading zero", "[[rule]]\nuid = 010\n", 2, "", "leading zeroes"},
		{"bad underscore", "[[rule]]\nuid = 1__0\n", 2, "", "underscores"},
		{"unterminated string", "[[rule]]\nlabel = 'x\nuid = 0\n", 2, "", "new lines"},
		{"bad escape", "[[rule]]\nlabel = \"\\q\"\n", 2, "", "escape"},
		{"surrogate escape", "[[rule]]\nlabel = \"\\ud800\"\n", 2, "", "unicode code point"},
		{"control in string", "[[rule]]\nlabel = \"a\x01\"\n", 2, "", "control characters"},
		{"unterminated array", "[[rule]]\nuid = [0,\n1\n", 3, "", "array is incomplete"},
		{"array separator", "[[rule]]\nuid = [0 1]\n", 2, "", "expected ',' or ']'"},
		{"garbage after value", "[[rule]]\nuid = 0 gid = 0\n", 2, "", "expected newline"},
		{"garbage after header", "[[rule]] uid = 0\n", 1, "", "expected newline"},
		{"unclosed header", "[[rule]\nuid = 0\n", 1, "", "expected ']]'"},
		{"empty header", "[]\n", 1, "", "invalid character at start of key"},
		{"not UTF-8", "[[rule]]\nlabel = '\xff'\n", 2, "", "invalid UTF-8"},
		{"deep nesting", "[[rule]]\nuid = " + strings.Repeat("[", 40) + "\n", 2, "", "incomplete"},
		{"deeper nesting", "[[rule]]\nuid = " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n", 2, "", "nest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := Parse(strings.NewReader(tc.src), "")
			checkPolicyError(t, pol, err, tc.line, tc.key, tc.msg)
		})
	}
}

func checkPolicyError(t *testing.T, pol *Policy, err error, line int, key, msg string) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, %v; want a *Error", pol, err)
	}
	if pe.Line != line || pe.Key != key || !strings.Contains(pe.Err.Error(), msg) {
		t.Errorf("error %q: line %d, key %q; want line %d, key %q, message containing %q", err, pe.Line, pe.Key, line, key, msg)
	}
	want := "line " + strconv.Itoa(line) + ": "
	if key != "" {
		want += "key " + key + ": "
	}
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
}

// TestPolicyExamples parses the example policies in testdata/policies,
// and checks that each bad one fails as its first line, "# error: LINE
// KEY MESSAGE", says (KEY "-": the error names no key).
func TestPolicyExamples(t *testing.T) {
	good, _ := filepath.Glob("testdata/policies/*.toml")
	bad, _ := filepath.Glob("testdata/policies/bad/*.toml")
	if len(good) == 0 || len(bad) == 0 {
		t.Fatal("no example policies in testdata/policies")
	}
	for _, name := range good {
		if _, err := Load(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range bad {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		f := strings.SplitN(strings.TrimPrefix(first, "# error: "), " ", 3)
		if len(f) != 3 {
			t.Fatalf("%s: first line %q is not # error: LINE KEY MESSAGE", name, first)
		}
		line, _ := strconv.Atoi(f[0])
		key, prefix := f[1], name+":"+f[0]+": key "+f[1]+": "
		if key == "-" {
			key, prefix = "", name+":"+f[0]+": "
		}
		t.Run(filepath.Base(name), func(t *testing.T) {
			pol, err := Load(name)
			var pe *Error
			if errors.As(err, &pe) && pe.File != name {
				t.Errorf("Error.File = %q, want %q", pe.File, name)
			}
			if err != nil && !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if pe != nil {
				pe.File = ""
			}
			checkPolicyError(t, pol, err, line, key, f[2])
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want ErrNotExist", err)
	}
}

func TestParseTooLarge(t *testing.T) {
	src := "[[rule]]\nuid = 0\n" + strings.Repeat("#\n", MaxSize)
	_, err := Parse(strings.NewReader(src), "")
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Parse of a huge file: %v", err)
	}
}

// TestRulesWithOwnKeys decodes a table that holds a key of its own beside
// rule keys, as a new section of the format (a [[route]] with its match)
// would.
func TestRulesWithOwnKeys(t *testing.T) {
	doc, err := decode([]byte("[[route]]\nmatch = ['GET /']\nuid = 0\n\n[[route]]\nmatch = ['GET /']\n"))
	if err != nil {
		t.Fatal(err)
	}
	root := table{value: value{v: doc.root, doc: doc, line: 1}, m: doc.root}
	routes, err := root.get("route").tables()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := tableRules(routes[0], "match")
	if err != nil || len(rs) != 1 || rs[0].String() != "uid(0)" {
		t.Errorf("rules of a route = %v, %v; want uid(0)", rs, err)
	}
	if got := routes[0].get("match").line; got != 2 {
		t.Errorf("match is on line %d, want 2", got)
	}
	_, err = tableRules(routes[1], "match")
	checkPolicyError(t, nil, err, 5, "route", "empty table")
	_, err = tableRules(routes[0])
	checkPolicyError(t, nil, err, 2, "route.match", `unknown rule "match"`)
}
