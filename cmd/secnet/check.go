package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/policy"
)

const checkUsage = `secnet check --policy FILE [--pid PID] [--json]

Validates a policy file: prints its rules and exits 0, or prints what is
wrong with it (file, line and key) and exits 1. With --pid it also checks
the running process PID against the policy, as it is now (read from
/proc, not from a connection), and exits 3 if the process fails it.`

// checkResult is the --json output of check without --pid.
type checkResult struct {
	Policy string   `json:"policy"`
	Valid  bool     `json:"valid"`
	Rules  []string `json:"rules,omitempty"`
	Error  string   `json:"error,omitempty"`
	Line   int      `json:"line,omitempty"`
	Key    string   `json:"key,omitempty"`
}

func runCheck(e *env, args []string) int {
	f := newFlags("check", checkUsage)
	policyFile := f.String("policy", "", "policy `file` to validate (required)")
	pid := f.Int("pid", 0, "`pid` of a running process to check against the policy")
	asJSON := f.Bool("json", false, "print JSON")
	if _, status, ok := f.parse(e, args, 0); !ok {
		return status
	}
	if status, ok := f.require(e, "policy"); !ok {
		return status
	}
	pol, err := policy.Load(*policyFile)
	if *pid == 0 {
		return printCheck(e, *policyFile, pol, err, *asJSON)
	}
	if err != nil {
		return failf(e, "check", "%v", err)
	}
	p, err := secnet.PeerOfProcess(*pid)
	if err != nil {
		return failf(e, "check", "%v", err)
	}
	r := newReport(&p, pol)
	if err := r.write(e.stdout, *asJSON); err != nil {
		return failf(e, "check", "%v", err)
	}
	if r.rejected() {
		return exitRejected
	}
	return exitOK
}

// printCheck reports whether the policy is valid.
func printCheck(e *env, name string, pol *policy.Policy, err error, asJSON bool) int {
	res := checkResult{Policy: name, Valid: err == nil}
	if err != nil {
		res.Error = err.Error()
		var pe *policy.Error
		if errors.As(err, &pe) {
			res.Line, res.Key = pe.Line, pe.Key
		}
	} else {
		res.Rules = strings.Split(pol.String(), "\n")
	}
	switch {
	case asJSON:
		json.NewEncoder(e.stdout).Encode(res)
	case err != nil:
		fmt.Fprintf(e.stderr, "secnet check: %v\n", err)
	default:
		fmt.Fprintf(e.stdout, "%s: valid; a peer must pass every rule:\n", name)
		for _, r := range res.Rules {
			fmt.Fprintf(e.stdout, "  %s\n", r)
		}
	}
	if err != nil {
		return exitError
	}
	return exitOK
}
