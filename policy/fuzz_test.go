package policy

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// FuzzParse checks that the whole policy loader (go-toml, then the rules)
// never panics or hangs, that a policy it accepts has valid rules, and
// that every error it returns is an *Error naming a line of the input.
// Seeds: testdata/policies and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	names, _ := filepath.Glob("testdata/policies/*.toml")
	bad, _ := filepath.Glob("testdata/policies/bad/*.toml")
	for _, name := range append(names, bad...) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, src string) {
		checkParse(t, src)
	})
}

// checkParse parses src and checks what FuzzParse promises.
func checkParse(t *testing.T, src string) {
	t.Helper()
	pol, err := Parse(strings.NewReader(src), "")
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is a %T, not an *Error", err, err)
		}
		if lines := strings.Count(src, "\n") + 1; pe.Line < 1 || pe.Line > lines {
			t.Fatalf("error %q names line %d of %d", err, pe.Line, lines)
		}
		return
	}
	rules := pol.Rules()
	if len(rules) == 0 {
		t.Fatal("a policy without rules was accepted")
	}
	for _, r := range rules {
		if err := r.Err(); err != nil {
			t.Fatalf("accepted an invalid rule: %v", err)
		}
	}
}

// TestParseLargeInputs parses inputs of MaxSize bytes that stress the
// decoder: nesting, many tables, many keys, long strings, many names to
// look up. Each must be decided (accepted or refused with an *Error)
// without a panic and with bounded memory.
func TestParseLargeInputs(t *testing.T) {
	fill := func(prefix, unit, suffix string) string {
		n := (MaxSize - len(prefix) - len(suffix)) / len(unit)
		return prefix + strings.Repeat(unit, n) + suffix
	}
	for _, tc := range []struct {
		name, src string
		ok        bool // whether the policy is valid
	}{
		{"open brackets", fill("[[rule]]\nuid = ", "[", "\n"), false},
		{"nested arrays", fill("[[rule]]\nuid = ", "[", "")[:MaxSize/2] + strings.Repeat("]", MaxSize/2-len("[[rule]]\nuid = ")), false},
		{"open braces", fill("[[rule]]\nnot = ", "{ not = ", "\n"), false},
		{"many rule tables", fill("", "[[rule]]\nuid = 0\n", ""), true},
		{"many headers", fill("[[rule]]\n", "[[rule.anyof]]\nuid = 1\n", ""), true},
		{"long array", fill("[[rule]]\nuid = [", "1,", "0]\n"), true},
		{"long string", fill("[[rule]]\nlabel = '", "a", "'\n"), true},
		{"many names", fill("", "[[rule]]\nuser = 'root'\n", ""), true},
		{"many unknown keys", fill("[[rule]]\nuid = 0\n", "#\n", "x = 1\n"), false},
		{"many keys", fill("[[rule]]\n", "a", " = 1\n"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.src) > MaxSize {
				t.Fatalf("input of %d bytes", len(tc.src))
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			checkParse(t, tc.src)
			runtime.ReadMemStats(&after)
			_, err := Parse(strings.NewReader(tc.src), "")
			if (err == nil) != tc.ok {
				t.Errorf("Parse: %.200v; want valid=%v", err, tc.ok)
			}
			// A generous bound: a few hundred bytes per input byte.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<20 {
				t.Errorf("parsing %d bytes allocated %d MiB", len(tc.src), alloc>>20)
			}
			t.Logf("%d bytes: %d MiB allocated", len(tc.src), (after.TotalAlloc-before.TotalAlloc)>>20)
		})
	}
}
