package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/policy"
)

const checkUsage = `secnet check --policy FILE [--pid PID] [--json]

Validates a policy file: prints its rules and exits 0, or prints what is
wrong with it (file, line and key) and exits 1. With --pid it also checks
the running process PID against the policy, as it is now (read from
/proc, not from a connection), and exits 3 if the process fails it.

--json prints one object, with or without --pid: policy, valid, rules,
error, line and key describe the policy file; process is null, or with
--pid the process's identity and verdict (pid, uid, user, gid, group,
groups, group_names, program, label, error, verdict, failures).

The policy file is TOML. Each [[rule]] table holds one or more rules, one
per key, and a peer must pass every rule of every table:

  # Members of group docker running the docker client, or root.
  [[rule]]
  anyof = [{ uid = 0 }, { group = "docker", program = "/usr/bin/docker" }]

Keys: uid, gid, ingroup (an integer or an array of them); user, group
(names); program (absolute paths); programdigest ("sha256:HEX"); label,
cgroup (patterns); unit (systemd units); onhost = true; samenamespaces
(true, or names such as "net"); sameuser = true; anyone = true;
sharedsecret (key files; in a [[rule]] table itself); allof, anyof
(arrays of tables); not (a table).

[[route]] tables (name, match = HTTP patterns, and rule keys) make
secnet proxy decide each HTTP request; check lists them (in --json:
routes and version_prefix). 'go doc github.com/secnet/secnet/policy'
describes every key.`

// checkResult is the --json output of check, with or without --pid.
type checkResult struct {
	Policy  string   `json:"policy"`
	Valid   bool     `json:"valid"`
	Rules   []string `json:"rules,omitempty"`
	Error   string   `json:"error,omitempty"`
	Line    int      `json:"line,omitempty"`
	Key     string   `json:"key,omitempty"`
	Process *report  `json:"process"` // nil without --pid
	// Routes are the [[route]] tables, when the policy has some.
	Routes        []routeReport `json:"routes,omitempty"`
	VersionPrefix string        `json:"version_prefix,omitempty"`
}

// routeReport is a [[route]] table in the output of check.
type routeReport struct {
	Name  string   `json:"name"`
	Match []string `json:"match"`
	Rules []string `json:"rules"` // empty: every peer that passes the policy's rules
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
	pidSet := false
	f.Visit(func(fl *flag.Flag) { pidSet = pidSet || fl.Name == "pid" })
	if pidSet && *pid <= 0 {
		return f.fail(e, "--pid must be a process id, 1 or more (got %d)", *pid)
	}
	pol, err := policy.Load(*policyFile)
	res := checkResult{Policy: *policyFile, Valid: err == nil}
	if err != nil {
		res.Error = undouble(err.Error())
		var pe *policy.Error
		if errors.As(err, &pe) {
			res.Line, res.Key = pe.Line, pe.Key
		}
		if *asJSON {
			json.NewEncoder(e.stdout).Encode(res)
			return exitError
		}
		return failf(e, "check", "%v", err)
	}
	res.Rules = strings.Split(pol.String(), "\n")
	if rt := pol.Router(); rt != nil {
		res.VersionPrefix = rt.VersionPrefix()
		for _, r := range rt.Routes() {
			cr := routeReport{Name: r.Name, Match: r.Match, Rules: []string{}}
			for _, rule := range r.Rules {
				cr.Rules = append(cr.Rules, rule.String())
			}
			res.Routes = append(res.Routes, cr)
		}
	}
	if !pidSet {
		if *asJSON {
			json.NewEncoder(e.stdout).Encode(res)
		} else {
			fmt.Fprintf(e.stdout, "%s: valid; a peer must pass every rule:\n", *policyFile)
			for _, r := range res.Rules {
				fmt.Fprintf(e.stdout, "  %s\n", r)
			}
			printRoutes(e.stdout, &res)
		}
		return exitOK
	}
	if err := checkProcess(*pid); err != nil {
		return failf(e, "check", "%v", err)
	}
	p, err := secnet.PeerOfProcess(*pid)
	if err != nil {
		if errors.Is(err, secnet.ErrPeerExited) && !processExists(*pid) {
			return failf(e, "check", "no process with pid %d", *pid)
		}
		return failf(e, "check", "%v", err)
	}
	res.Process = newReport(&p, pol)
	if *asJSON {
		err = json.NewEncoder(e.stdout).Encode(res)
	} else {
		err = res.Process.write(e.stdout, false)
	}
	if err != nil {
		return failf(e, "check", "%v", err)
	}
	if res.Process.rejected() {
		return exitRejected
	}
	return exitOK
}

// checkProcess refuses a pid that names no process, or a kernel thread,
// with a message that says which.
func checkProcess(pid int) error {
	if !processExists(pid) {
		return fmt.Errorf("no process with pid %d", pid)
	}
	if kernelThread(pid) {
		return fmt.Errorf("pid %d is a kernel thread: it runs no program and never connects to a socket", pid)
	}
	return nil
}

// processExists reports whether a process with this pid exists (in this
// process's pid namespace).
func processExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err == nil {
		return true
	}
	if !errors.Is(err, os.ErrNotExist) {
		return true // cannot tell: let the check say what it finds
	}
	// Without /proc (other systems), ask the kernel.
	if _, err := os.Stat("/proc/self"); err != nil {
		return signalZero(pid)
	}
	return false
}

// printRoutes lists the routes of a policy that has some.
func printRoutes(w io.Writer, res *checkResult) {
	if res.Routes == nil {
		return
	}
	fmt.Fprintf(w, "HTTP: each request is decided by the route of the most specific pattern that matches it")
	if res.VersionPrefix != "" {
		fmt.Fprintf(w, " (matched without a leading %s)", res.VersionPrefix)
	}
	fmt.Fprintf(w, "; no match is refused:\n")
	for _, r := range res.Routes {
		who := "every peer that passes the rules above"
		if len(r.Rules) > 0 {
			who = strings.Join(r.Rules, " and ")
		}
		fmt.Fprintf(w, "  route %q, for %s:\n", r.Name, who)
		for _, m := range r.Match {
			fmt.Fprintf(w, "    %s\n", m)
		}
	}
}
