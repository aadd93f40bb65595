package secnet

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
		{"digest", "[[rule]]\nprogramdigest = \"sha256:" + strings.Repeat("aB", 32) + "\"\n",
			[]string{"programdigest(sha256:" + strings.Repeat("ab", 32) + ")"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := ParsePolicy(strings.NewReader(tc.src))
			if err != nil {
				t.Fatalf("ParsePolicy: %v", err)
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
		{"int out of range", "[[rule]]\nuid = 99999999999999999999\n", 2, "rule.uid", "out of range"},
		{"empty table", "[[rule]]\n# nothing\n[[rule]]\nuid = 0\n", 1, "rule", "empty table"},
		{"empty inline", "[[rule]]\nanyof = [{}, {uid = 0}]\n", 2, "rule.anyof", "empty table"},
		{"empty list", "[[rule]]\nuid = []\n", 2, "rule.uid", "empty array"},
		{"false", "[[rule]]\nanyone = false\n", 2, "rule.anyone", "false is not a rule"},
		{"not array", "[[rule]]\nnot = [{uid = 0}]\n", 2, "rule.not", "want a table, got an array"},
		{"anyof table", "[[rule]]\n[rule.anyof]\nuid = 0\n", 2, "rule.anyof", "want an array of tables"},
		{"top-level key", "uid = 0\n", 1, "uid", "unknown key"},
		{"duplicate key", "[[rule]]\nuid = 0\ngid = 0\nuid = 1\n", 4, "rule.uid", "defined twice"},
		{"duplicate table", "[[rule]]\n[rule.not]\nuid = 0\n[rule.not]\ngid = 0\n", 4, "rule.not", "already defined on line 2"},
		{"header over inline", "[[rule]]\nnot = {uid = 0}\n[rule.not]\n", 3, "rule.not", "already defined on line 2"},
		{"append to static array", "rule = [{uid = 0}]\n[[rule]]\ngid = 0\n", 2, "rule", "already defined on line 1 as an array"},
		{"dotted key", "[[rule]]\nnot.uid = 0\n", 2, "rule.not", "dotted keys are not supported"},
		{"quoted key", "[[rule]]\n\"uid\" = 0\n", 2, "rule", "quoted keys are not supported"},
		{"missing equals", "[[rule]]\nuid 0\n", 2, "rule.uid", "expected '='"},
		{"missing value", "[[rule]]\nuid =\n", 2, "rule.uid", "expected a value"},
		{"bare word", "[[rule]]\nuser = root\n", 2, "rule.user", `invalid value "root"`},
		{"float", "[[rule]]\nuid = 1e3\n", 2, "rule.uid", "floating-point"},
		{"date", "[[rule]]\nuid = 2024-01-01\n", 2, "rule.uid", "dates and times"},
		{"hex", "[[rule]]\nuid = 0x10\n", 2, "rule.uid", "decimal"},
		{"leading zero", "[[rule]]\nuid = 010\n", 2, "rule.uid", "invalid value"},
		{"bad underscore", "[[rule]]\nuid = 1__0\n", 2, "rule.uid", "invalid value"},
		{"multi-line string", "[[rule]]\nlabel = \"\"\"x\"\"\"\n", 2, "rule.label", "multi-line strings"},
		{"unterminated string", "[[rule]]\nlabel = 'x\nuid = 0\n", 2, "rule.label", "unterminated string"},
		{"bad escape", "[[rule]]\nlabel = \"\\x41\"\n", 2, "rule.label", `invalid escape \x`},
		{"surrogate escape", "[[rule]]\nlabel = \"\\ud800\"\n", 2, "rule.label", "invalid escape"},
		{"control in string", "[[rule]]\nlabel = \"a\x01\"\n", 2, "rule.label", "control character"},
		{"unterminated array", "[[rule]]\nuid = [0,\n1\n", 2, "rule.uid", "unterminated array"},
		{"array separator", "[[rule]]\nuid = [0 1]\n", 2, "rule.uid", "expected ',' or ']'"},
		{"multi-line inline table", "[[rule]]\nnot = { uid = 0,\n}\n", 2, "rule.not", "must end on the line"},
		{"inline trailing comma", "[[rule]]\nnot = { uid = 0, }\n", 2, "rule.not", "expected a key"},
		{"garbage after value", "[[rule]]\nuid = 0 gid = 0\n", 2, "rule.uid", "unexpected 'g'"},
		{"garbage after header", "[[rule]] uid = 0\n", 1, "rule", "unexpected 'u'"},
		{"unclosed header", "[[rule]\nuid = 0\n", 1, "rule", `expected "]]"`},
		{"empty header", "[]\n", 1, "", "expected a key"},
		{"not UTF-8", "[[rule]]\nlabel = '\xff'\n", 2, "", "not valid UTF-8"},
		{"deep nesting", "[[rule]]\nuid = " + strings.Repeat("[", 40) + "\n", 2, "rule.uid", "nested more than 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := ParsePolicy(strings.NewReader(tc.src))
			checkPolicyError(t, pol, err, tc.line, tc.key, tc.msg)
		})
	}
}

func checkPolicyError(t *testing.T, pol *Policy, err error, line int, key, msg string) {
	t.Helper()
	var pe *PolicyError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, %v; want a *PolicyError", pol, err)
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
// KEY MESSAGE", says.
func TestPolicyExamples(t *testing.T) {
	good, _ := filepath.Glob("testdata/policies/*.toml")
	bad, _ := filepath.Glob("testdata/policies/bad/*.toml")
	if len(good) == 0 || len(bad) == 0 {
		t.Fatal("no example policies in testdata/policies")
	}
	for _, name := range good {
		if _, err := LoadPolicy(name); err != nil {
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
		t.Run(filepath.Base(name), func(t *testing.T) {
			pol, err := LoadPolicy(name)
			var pe *PolicyError
			if errors.As(err, &pe) && pe.File != name {
				t.Errorf("PolicyError.File = %q, want %q", pe.File, name)
			}
			if err != nil && !strings.HasPrefix(err.Error(), name+":"+f[0]+": key "+f[1]+": ") {
				t.Errorf("error %q does not start with FILE:LINE: key KEY:", err)
			}
			if pe != nil {
				pe.File = ""
			}
			checkPolicyError(t, pol, err, line, f[1], f[2])
		})
	}
}

func TestLoadPolicyMissingFile(t *testing.T) {
	_, err := LoadPolicy(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadPolicy of a missing file: %v, want ErrNotExist", err)
	}
}

func TestParsePolicyTooLarge(t *testing.T) {
	src := "[[rule]]\nuid = 0\n" + strings.Repeat("#\n", maxPolicySize)
	_, err := ParsePolicy(strings.NewReader(src))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("ParsePolicy of a huge file: %v", err)
	}
}

// TestPolicyCheck applies parsed policies to identities.
func TestPolicyCheck(t *testing.T) {
	sh, err := statFileID("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh:", err)
	}
	own, err := OwnNamespaces()
	if err != nil {
		t.Skip(err)
	}
	peer := func(uid, gid int, groups ...int) *Peer {
		return &Peer{PID: 42, UID: uid, GID: gid, Groups: groups, Program: "/bin/sh", exe: sh, Namespaces: own, known: attrAll}
	}
	other := peer(0, 0)
	other.Namespaces.User++ // a user namespace of its own
	const src = `
[[rule]]
not = { uid = 1 }

[[rule]]
[[rule.anyof]]
uid = 0
[[rule.anyof]]
ingroup = 4
program = "/bin/sh"
`
	pol, err := ParsePolicy(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		p      *Peer
		failed string // names of the failed rules
	}{
		{"root", peer(0, 0), ""},
		{"in group 4", peer(1000, 1000, 4), ""},
		{"primary group 4", peer(1000, 4), ""},
		{"not in group", peer(1000, 1000, 5), "anyof"},
		{"uid 1", peer(1, 4), "not"},
		{"uid 1 not in group", peer(1, 1), "not,anyof"},
		{"another user namespace", other, "not"},
		{"unreadable", &Peer{known: attrAll, errs: errSet{cred: ErrPeerExited}}, "not,anyof"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pol.Check(tc.p)
			var names []string
			var rej *RejectError
			if errors.As(err, &rej) {
				for _, f := range rej.Failures {
					names = append(names, f.Rule)
				}
			} else if err != nil {
				t.Fatalf("Check: %v, want a *RejectError", err)
			}
			if got := strings.Join(names, ","); got != tc.failed {
				t.Errorf("failed rules %q, want %q (%v)", got, tc.failed, err)
			}
		})
	}
}

// TestPolicyProgramComparesFiles shows that a program rule from a policy
// compares files: a copy of the program elsewhere does not pass.
func TestPolicyProgramComparesFiles(t *testing.T) {
	bin := peerBinary(t)
	h := listen(t, Anyone())
	pol, err := ParsePolicy(strings.NewReader("[[rule]]\nprogram = '" + bin + "'\n"))
	if err != nil {
		t.Fatal(err)
	}
	startClient(t, bin, h.path, "hold", nil)
	c := h.mustAccept(t)
	p := c.Peer()
	if err := pol.Check(&p); err != nil {
		t.Errorf("the peer binary fails its own program rule: %v", err)
	}
	exe := mustExecutable(t) // same bytes as bin, another file
	startClient(t, exe, h.path, "hold", nil)
	c = h.mustAccept(t)
	p = c.Peer()
	if err := pol.Check(&p); err == nil || !strings.Contains(err.Error(), "is not "+bin) {
		t.Errorf("a copy of the program passes: %v", err)
	}
}
