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
