// Package policy reads policy files: TOML files that say which processes
// may connect to a Unix socket, as rules of package secnet.
//
//	pol, err := policy.Load("/etc/myd/policy.toml")
//	if err != nil {
//		log.Fatal(err) // e.g. /etc/myd/policy.toml:7: key rule.user: no user named "bob" exists
//	}
//	ln, err := secnet.Listen("unix", "/run/myd.sock", pol.Rules()...)
//
// The secnet command reads the same files (secnet proxy, inspect, whoami
// and check --policy FILE). docs/policy.md in the repository is the guide
// for operators; docs/policies holds complete policies for a Docker
// socket and for a systemd service.
//
// # Shape
//
// A policy is a list of [[rule]] tables. Each key of a table is one rule,
// and a peer must pass every rule of every table:
//
//	# Root, or a member of group docker running the docker CLI; never nobody.
//	[[rule]]
//	not = { user = "nobody" }
//
//	[[rule]]
//	anyof = [{ uid = 0 }, { group = "docker", program = "/usr/bin/docker" }]
//
// A table of several keys passes when all of them pass. The same tables
// can be written with headers: [[rule.anyof]] adds a table to the anyof
// of the last [[rule]] above it, [rule.not] sets its not.
//
// # Keys
//
// Every key of a rule table, with an example. A key that takes a list
// takes one value or a non-empty array of them; the rule passes when one
// of them matches (see the function of package secnet it builds).
//
//	uid = [0, 1000]              # secnet.UID: effective uid is one of them
//	gid = 0                      # secnet.GID: effective primary gid
//	ingroup = [4, 27]            # secnet.InGroup: primary or supplementary group
//	user = "root"                # secnet.User: uid of one of these users
//	group = ["adm", "docker"]    # secnet.Group: in one of these groups
//	program = "/usr/bin/docker"  # secnet.Program: runs this file (by device and inode)
//	programdigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
//	                             # secnet.ProgramDigest: the executable's SHA-256
//	label = "system_u:system_r:sshd_t:*"  # secnet.Label: LSM label pattern (* ? \)
//	unit = "sshd.service"        # secnet.Unit: runs in this systemd unit (or slice)
//	cgroup = "/system.slice/docker-*.scope"  # secnet.Cgroup: cgroup v2 path pattern
//	sameuser = true              # secnet.SameUser: same uid as the process reading the policy
//	onhost = true                # secnet.OnHost: not in a container
//	samenamespaces = ["net", "mnt"]  # secnet.SameNamespaces: those namespaces (true: all seven)
//	anyone = true                # secnet.Anyone: any local process
//	sharedsecret = "/etc/myd/agent.key"  # secnet.SharedSecrets: the client proves it holds a key
//	allof = [{ uid = 0 }, { gid = 0 }]     # secnet.AllOf: passes every table
//	anyof = [{ uid = 0 }, { ingroup = 4 }] # secnet.AnyOf: passes one table at least
//	not = { user = "nobody" }    # secnet.Not: fails the table (an unreadable identity fails not too)
//
// The flags take true only: false is an error, not a rule that passes
// everyone (write not = { onhost = true } for "in a container").
//
// sharedsecret names key files, read when the policy is decoded: each
// must be a regular file that its group and others can neither read nor
// write (secnet.ReadSecretFile). Several files accept any of their keys,
// for key rotation. It is a handshake rule, run after every other rule
// passed: it is valid as a key of a [[rule]] table only, not inside
// anyof, allof or not, and Policy.Check, which has no connection to talk
// to, fails it. Clients answer with secnet.ProveSharedSecret (secnet
// whoami --secret-file).
//
// # Strictness
//
// Files are decoded by go-toml (github.com/pelletier/go-toml/v2), so a
// file means what TOML says it means to any TOML parser; anything that is
// not TOML is refused. Then every one of these is an error that names the
// file, the line and the key (an *Error), and the policy is not used:
// a key that is not a rule, at any depth, or a top-level key other than
// rule; a value of the wrong type (uid = "root"), an empty array, a
// negative or too large id, false for a flag; a user or group that does
// not exist; a program path that is relative or names no file; an
// invalid label pattern, digest, unit name or namespace kind; a
// sharedsecret key file that is missing, not absolute, not a regular file
// or readable by group or others, or a sharedsecret below anyof, allof
// or not; an empty
// table; a policy without rules. An empty policy never lets everyone in:
// a socket open to every local process says so with anyone = true.
//
// # Routes
//
// [[route]] tables make secnet proxy an HTTP proxy that decides each
// request (docs/docker.md). Each has a name, a match (patterns in the
// syntax of http.ServeMux, without a host: "GET /containers/{id}/json",
// "/") and, optionally, rule keys that a client must pass to use it; a
// route without them lets in every client that passed the [[rule]]
// tables. The most specific pattern that matches a request decides, as in
// a ServeMux; a request no pattern matches is refused. An [http] table
// sets version_prefix = "/v{version}", a prefix removed from paths before
// they are matched (Docker's /v1.41/...):
//
//	[http]
//	version_prefix = "/v{version}"
//
//	[[route]]
//	name = "look"
//	match = ["GET /containers/json", "GET /containers/{id}/json"]
//	group = "docker"
//
//	[[route]]
//	name = "root"
//	match = ["/"]
//	uid = 0
//
// Conflicting patterns (two that match the same requests with neither more
// specific), patterns with a host, a route without a name or a match, two
// routes of one name and [http] without routes are errors with file:line.
// Policy.Router returns the Router that decides requests.
//
// # Growing the format
//
// A rule key is one entry of ruleKinds (rules.go). A new top-level table
// or key (such as [[route]] for an HTTP proxy, or the file of a shared
// secret) is one entry of sections (policy.go), which decodes its value
// into a new field of Policy (decodeRules is the model). The table type
// gives the keys of a table in file order with their lines, and
// tableRules(t, "match") turns every key of t but match into rules,
// so a table that mixes keys of its own with rule keys reuses them all.
package policy
