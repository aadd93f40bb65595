package secnet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParsePolicy checks that ParsePolicy never panics or hangs, that a
// policy it accepts has valid rules, and that every error it returns is
// a *PolicyError naming a line of the input. Seeds: testdata/policies and
// testdata/fuzz/FuzzParsePolicy.
func FuzzParsePolicy(f *testing.F) {
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
		pol, err := ParsePolicy(strings.NewReader(src))
		if err != nil {
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, not a *PolicyError", err, err)
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
	})
}
