package secnet

import (
	"strings"
	"testing"
)

// globToken is one element of a pattern, for the reference matcher.
type globToken struct {
	kind byte // 'l' literal, '?' any byte, '*' any run, 'x' matches nothing
	b    byte
}

// refGlobMatch is a reference for globMatch written another way: the
// pattern is split into tokens, then a table records which prefixes of s
// each prefix of the pattern matches. A '\' at the very end of a pattern
// matches nothing (validGlob rejects such patterns).
func refGlobMatch(pattern, s string) bool {
	var toks []globToken
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '*' || c == '?':
			toks = append(toks, globToken{kind: c})
		case c == '\\' && i+1 < len(pattern):
			i++
			toks = append(toks, globToken{kind: 'l', b: pattern[i]})
		case c == '\\':
			toks = append(toks, globToken{kind: 'x'})
		default:
			toks = append(toks, globToken{kind: 'l', b: c})
		}
	}
	// m[j]: the tokens so far match s[:j].
	m := make([]bool, len(s)+1)
	m[0] = true
	for _, t := range toks {
		next := make([]bool, len(s)+1)
		for j := 0; j <= len(s); j++ {
			switch t.kind {
			case '*':
				next[j] = m[j] || (j > 0 && next[j-1])
			case '?':
				next[j] = j > 0 && m[j-1]
			case 'l':
				next[j] = j > 0 && m[j-1] && s[j-1] == t.b
			}
		}
		m = next
	}
	return m[len(s)]
}

// quoteGlob escapes every special byte of s: the result matches s only.
func quoteGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '*' || c == '?' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkGlob applies every property of globMatch to one input.
func checkGlob(t *testing.T, pattern, s string) {
	t.Helper()
	got, steps := globMatchSteps(pattern, s)
	if want := refGlobMatch(pattern, s); got != want {
		t.Errorf("globMatch(%q, %q) = %v, reference says %v", pattern, s, got, want)
	}
	if max := (len(s)+1)*(len(pattern)+1) + len(pattern); steps > max {
		t.Errorf("globMatch(%q, %q) took %d steps, more than the bound %d", pattern, s, steps, max)
	}
	lone := strings.HasSuffix(strings.ReplaceAll(pattern, `\\`, ""), `\`)
	if err := validGlob(pattern); (err != nil) != lone {
		t.Errorf("validGlob(%q) = %v; the pattern ends with a lone '\\': %v", pattern, err, lone)
	}
	if !globMatch(quoteGlob(s), s) {
		t.Errorf("the quoted pattern %q does not match %q", quoteGlob(s), s)
	}
	if globMatch(quoteGlob(pattern), s) != (pattern == s) {
		t.Errorf("the quoted pattern %q matches %q: %v", quoteGlob(pattern), s, pattern == s)
	}
	if !globMatch("*", s) {
		t.Errorf("'*' does not match %q", s)
	}
	if got && !lone && (!globMatch(pattern+"*", s+"tail") || !globMatch("*"+pattern, "head"+s)) {
		t.Errorf("%q matches %q, but a '*' added at either end does not match more", pattern, s)
	}
}

// FuzzGlobMatch compares globMatch, used by Label rules on labels that
// peers can choose, with a reference matcher, and checks that it stays
// within its O(len(pattern)*len(s)) bound.
func FuzzGlobMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"", ""},
		{"*", "anything/at all"},
		{"system_u:system_r:*_t:s0", "system_u:system_r:sshd_t:s0"},
		{"/usr/bin/?ython3*", "/usr/bin/python3.12"},
		{`unconfined \(enforce\)`, "unconfined (enforce)"},
		{`a\*b`, "a*b"},
		{`a\*b`, "axb"},
		{`trailing\`, `trailing\`},
		{"a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"*?*?*?", "ab"},
		{"**", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 256 || len(s) > 256 {
			return // the reference is quadratic too
		}
		checkGlob(t, pattern, s)
	})
}

// TestGlobMatchIsNotSlow runs patterns that make a backtracking matcher
// take exponential time, and checks the step count stays within the
// quadratic bound.
func TestGlobMatchIsNotSlow(t *testing.T) {
	s := strings.Repeat("a", 2000)
	for _, pattern := range []string{
		strings.Repeat("a*", 100) + "b",
		strings.Repeat("*a", 100) + "b",
		strings.Repeat("?*", 100) + "b",
		"*" + strings.Repeat("a", 1000) + "*b",
	} {
		ok, steps := globMatchSteps(pattern, s)
		if ok {
			t.Errorf("pattern %.20q... matched a string without 'b'", pattern)
		}
		if max := (len(s)+1)*(len(pattern)+1) + len(pattern); steps > max {
			t.Errorf("pattern %.20q...: %d steps, more than the bound %d", pattern, steps, max)
		}
		t.Logf("pattern %.20q... (%d bytes) against %d bytes: %d steps", pattern, len(pattern), len(s), steps)
	}
}

// FuzzParseCgroupFile feeds parseCgroupFile and cgroupUnits with text in
// the shape of /proc/<pid>/cgroup. Cgroup names below a delegated subtree
// are chosen by the peer's owner, so they are untrusted: no input may
// panic, a path found must be absolute, a unit found must be a unit name,
// and a plain cgroup v2 file must give back its path.
func FuzzParseCgroupFile(f *testing.F) {
	for _, seed := range []string{
		"0::/system.slice/sshd.service\n",
		"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope\n",
		"12:pids:/user.slice\n1:name=systemd:/system.slice/docker-0123.scope\n0::/\n",
		"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope\n",
		"0::/a (deleted)\n",
		"0::/_escaped.service/x\n",
		"garbage",
		"0::relative\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if path, err := parseCgroupFile(raw); err == nil {
			if !strings.HasPrefix(path, "/") {
				t.Errorf("parseCgroupFile(%q) = %q, not an absolute path", raw, path)
			}
			info := cgroupUnits(path)
			if info.unit != "" && !isUnitName(info.unit) {
				t.Errorf("cgroupUnits(%q): unit %q is not a unit name", path, info.unit)
			}
			if info.userUnit != "" && !isUserManager(info.unit) {
				t.Errorf("cgroupUnits(%q): user unit %q outside a user manager (%q)", path, info.userUnit, info.unit)
			}
		}
		// raw as one cgroup v2 path
		if !strings.HasPrefix(raw, "/") || strings.ContainsAny(raw, "\n") || strings.HasSuffix(raw, " (deleted)") {
			return
		}
		if got, err := parseCgroupFile("0::" + raw + "\n"); err != nil || got != raw {
			t.Errorf("parseCgroupFile of the v2 line for %q = %q, %v", raw, got, err)
		}
	})
}
