package secnet

import "errors"

// globMatch reports whether s matches pattern, in which '*' matches any
// run of bytes (including '/'), '?' matches one byte, and '\' makes the
// next byte literal. It runs in O(len(pattern)*len(s)) at worst, without
// recursion, so that hostile labels or paths cannot make it slow.
func globMatch(pattern, s string) bool {
	ok, _ := globMatchSteps(pattern, s)
	return ok
}

// globMatchSteps is globMatch that also counts the iterations of its
// loops, so that tests can check the bound: at most
// (len(s)+1)*(len(pattern)+1) + len(pattern).
func globMatchSteps(pattern, s string) (bool, int) {
	var p, i int         // positions in pattern and s
	star, retry := -1, 0 // the last '*' seen and where in s it resumes
	steps := 0
	for i < len(s) {
		steps++
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				star, retry = p, i
				p++
				continue
			case '?':
				p++
				i++
				continue
			case '\\':
				if p+1 < len(pattern) && pattern[p+1] == s[i] {
					p += 2
					i++
					continue
				}
			default:
				if c == s[i] {
					p++
					i++
					continue
				}
			}
		}
		if star < 0 {
			return false, steps
		}
		retry++
		p, i = star+1, retry
	}
	for p < len(pattern) && pattern[p] == '*' {
		steps++
		p++
	}
	return p == len(pattern), steps
}

// validGlob reports a pattern that globMatch cannot match as written.
func validGlob(pattern string) error {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '\\' {
			if i+1 == len(pattern) {
				return errors.New("pattern " + pattern + " ends with a lone '\\'")
			}
			i++
		}
	}
	return nil
}
