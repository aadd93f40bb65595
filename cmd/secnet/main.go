// Command secnet puts a policy in front of any Unix socket and shows who is
// at the other end of one.
//
//	secnet proxy   --listen PATH --upstream PATH --policy FILE
//	secnet inspect --listen PATH [--policy FILE] [--json]
//	secnet whoami  [--policy FILE] [--json] PATH
//	secnet check   --policy FILE [--pid PID] [--json]
//	secnet demo
//
// Policy files are described in docs/policy.md, the commands in
// docs/cli.md (and, for an installed binary, in 'secnet check --help' and
// 'secnet COMMAND --help'). Exit status: 0 success, 1 error, 2 bad usage, 3 a peer
// failed the policy.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Exit statuses.
const (
	exitOK       = 0
	exitError    = 1 // the command could not do its job
	exitUsage    = 2 // bad command line
	exitRejected = 3 // a peer failed the policy
)

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3"; otherwise the module version.
var version string

// env is what a command writes to.
type env struct {
	stdout, stderr io.Writer
}

type command struct {
	name    string
	args    string // synopsis of the arguments
	summary string // one line for the command list; empty hides the command
	run     func(e *env, args []string) int
}

func commands() []command {
	return []command{
		{"proxy", "--listen PATH --upstream PATH --policy FILE", "put a policy in front of a Unix socket", runProxy},
		{"inspect", "--listen PATH [--policy FILE] [--json]", "print who connects, and the policy's verdict", runInspect},
		{"whoami", "[--policy FILE] [--json] PATH", "print who serves a socket, and the verdict", runWhoami},
		{"check", "--policy FILE [--pid PID] [--json]", "validate a policy, or check a process with it", runCheck},
		{"demo", "", "run a verified listener and connect to it", runDemo},
		{"version", "", "print the version (also --version)", runVersion},
		{demoClientCommand, "PATH", "", runDemoClient},
	}
}

func main() {
	os.Exit(run(os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr}))
}

func run(args []string, e *env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(e.stdout)
		return exitOK
	case "-version", "--version":
		return runVersion(e, nil)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "secnet: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `secnet secures Unix domain sockets by verifying the process at the other end.

Usage:
`)
	for _, c := range commands() {
		if c.summary != "" {
			fmt.Fprintf(w, "  secnet %-7s %-45s %s\n", c.name, c.args, c.summary)
		}
	}
	fmt.Fprint(w, `
Run 'secnet COMMAND --help' for the options of a command.
Policy files are TOML; 'secnet check --help' describes the format.
Exit status: 0 success, 1 error, 2 bad usage, 3 a peer failed the policy.
`)
}

func runVersion(e *env, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(e.stderr, "usage: secnet version")
		return exitUsage
	}
	v := version
	if v == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			v = bi.Main.Version
		}
	}
	if v == "" {
		v = "(devel)"
	}
	fmt.Fprintf(e.stdout, "secnet %s (%s, %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// flags is the flag set of a subcommand and its help text.
type flags struct {
	*flag.FlagSet
	name  string
	usage string // "secnet NAME ARGS" and a description
}

func newFlags(name, usage string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse prints nothing; errors are printed below
	return &flags{FlagSet: fs, name: name, usage: usage}
}

// parse parses args, flags and up to maxArgs positional arguments in any
// order. It returns the positional arguments, or ok false and the exit
// status: 0 after --help (the help is printed to stdout), 2 after a
// usage error (printed to stderr).
func (f *flags) parse(e *env, args []string, maxArgs int) (pos []string, status int, ok bool) {
	for {
		err := f.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			f.printHelp(e.stdout)
			return nil, exitOK, false
		}
		if err != nil {
			return nil, f.fail(e, "%v", err), false
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) > maxArgs {
		return nil, f.fail(e, "unexpected argument %q", pos[maxArgs]), false
	}
	return pos, exitOK, true
}

// fail reports a usage error and returns exitUsage.
func (f *flags) fail(e *env, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "secnet %s: %s\nRun 'secnet %s --help' for usage.\n", f.name, undouble(fmt.Sprintf(format, args...)), f.name)
	return exitUsage
}

// require reports the first of the named string flags that is empty.
func (f *flags) require(e *env, names ...string) (int, bool) {
	for _, n := range names {
		if f.Lookup(n).Value.String() == "" {
			return f.fail(e, "--%s is required", n), false
		}
	}
	return exitOK, true
}

// printHelp prints the usage text and every flag, each in the --flag
// form the usage line uses.
func (f *flags) printHelp(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s\n\nOptions:\n", strings.TrimSpace(f.usage))
	f.VisitAll(func(fl *flag.Flag) {
		name, usage := flag.UnquoteUsage(fl)
		fmt.Fprintf(&b, "  --%s", fl.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
		if def := fl.DefValue; def != "" && def != "0" && def != "0s" && def != "false" {
			fmt.Fprintf(&b, " (default %s)", def)
		}
		b.WriteString("\n")
	})
	io.WriteString(w, b.String())
}

// failf prints an error of a command and returns exitError.
func failf(e *env, name, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "secnet %s: %s\n", name, undouble(fmt.Sprintf(format, args...)))
	return exitError
}

// undouble drops the "secnet: " that errors of the library begin with:
// the command names itself already.
func undouble(msg string) string {
	return strings.ReplaceAll(strings.TrimPrefix(msg, "secnet: "), ": secnet: ", ": ")
}
