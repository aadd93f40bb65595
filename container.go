package secnet

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// NamespaceKind names a kind of Linux namespace as /proc/<pid>/ns names
// it: "user", "pid", "mnt", "net", "cgroup", "ipc" or "uts".
type NamespaceKind string

// The kinds of namespace secnet reads.
const (
	UserNamespace   NamespaceKind = "user"
	PIDNamespace    NamespaceKind = "pid"
	MountNamespace  NamespaceKind = "mnt"
	NetNamespace    NamespaceKind = "net"
	CgroupNamespace NamespaceKind = "cgroup"
	IPCNamespace    NamespaceKind = "ipc"
	UTSNamespace    NamespaceKind = "uts"
)

// NamespaceKinds returns every kind of namespace secnet reads, in the
// order Namespaces.String prints them.
func NamespaceKinds() []NamespaceKind {
	return []NamespaceKind{UserNamespace, PIDNamespace, MountNamespace, NetNamespace,
		CgroupNamespace, IPCNamespace, UTSNamespace}
}

// Namespaces holds the ids of a process's namespaces: the inode numbers
// that /proc/<pid>/ns/<kind> shows, as in "net:[4026531833]". Two
// processes are in the same namespace of a kind when the ids are equal.
// An id of 0 was not read.
type Namespaces struct {
	User, PID, Mount, Net, Cgroup, IPC, UTS uint64
}

// ID returns the id of the namespace of kind k, or 0 for an unknown kind.
func (n Namespaces) ID(k NamespaceKind) uint64 {
	if f := n.field(k); f != nil {
		return *f
	}
	return 0
}

func (n *Namespaces) field(k NamespaceKind) *uint64 {
	switch k {
	case UserNamespace:
		return &n.User
	case PIDNamespace:
		return &n.PID
	case MountNamespace:
		return &n.Mount
	case NetNamespace:
		return &n.Net
	case CgroupNamespace:
		return &n.Cgroup
	case IPCNamespace:
		return &n.IPC
	case UTSNamespace:
		return &n.UTS
	}
	return nil
}

// Differ returns the kinds, among kinds (every kind when none is given),
// whose namespaces differ between n and o.
func (n Namespaces) Differ(o Namespaces, kinds ...NamespaceKind) []NamespaceKind {
	if len(kinds) == 0 {
		kinds = NamespaceKinds()
	}
	var out []NamespaceKind
	for _, k := range kinds {
		if n.ID(k) != o.ID(k) {
			out = append(out, k)
		}
	}
	return out
}

// String formats the ids as /proc shows them:
// "user:[4026531837] pid:[4026531836] ...".
func (n Namespaces) String() string {
	parts := make([]string, 0, 7)
	for _, k := range NamespaceKinds() {
		parts = append(parts, string(k)+":["+strconv.FormatUint(n.ID(k), 10)+"]")
	}
	return strings.Join(parts, " ")
}

// SharesNamespaces reports whether the peer is in this process's
// namespaces of the given kinds (of every kind when none is given). It
// returns an error when the peer's or this process's namespaces could not
// be read.
func (p *Peer) SharesNamespaces(kinds ...NamespaceKind) (bool, error) {
	if err := checkKinds(kinds); err != nil {
		return false, err
	}
	if err := p.need(attrNamespaces); err != nil {
		return false, err
	}
	own, err := OwnNamespaces()
	if err != nil {
		return false, err
	}
	return len(p.Namespaces.Differ(own, kinds...)) == 0, nil
}

func checkKinds(kinds []NamespaceKind) error {
	for _, k := range kinds {
		if (&Namespaces{}).field(k) == nil {
			return fmt.Errorf("unknown namespace kind %q (want one of user, pid, mnt, net, cgroup, ipc, uts)", string(k))
		}
	}
	return nil
}

// hostNamespaces are the ids the kernel gives the initial namespaces of
// the kinds for which they are fixed numbers (include/linux/proc_ns.h:
// ipc, uts, user and pid since Linux 3.8, cgroup since 4.6). The initial
// mount and network namespaces have fixed ids only on recent kernels, so
// OnHost does not look at them.
var hostNamespaces = Namespaces{
	IPC:    0xEFFFFFFF,
	UTS:    0xEFFFFFFE,
	User:   0xEFFFFFFD,
	PID:    0xEFFFFFFC,
	Cgroup: 0xEFFFFFFB,
}

var hostKinds = []NamespaceKind{UserNamespace, PIDNamespace, CgroupNamespace, IPCNamespace, UTSNamespace}

// OnHost passes a peer that runs in the host's initial user, pid, cgroup,
// ipc and uts namespaces: not in a container, whatever namespaces the
// listener itself runs in. Docker, Podman, Kubernetes, LXC and
// systemd-nspawn create a new pid namespace for a container unless told
// to share the host's; rootless containers and userns-remap also a new
// user namespace. OnHost does not compare the mount and network
// namespaces, so that services that systemd sandboxes (PrivateTmp,
// ProtectSystem, PrivateNetwork, ...) still pass; a container started with
// the host's pid, ipc, uts, cgroup and user namespaces passes too (see
// docs/containers.md for rules that catch it). A listener that runs in a
// container with its own pid namespace sees no host peer with a visible
// pid, so OnHost rejects every peer there.
func OnHost() Rule {
	return leaf("onhost", "onhost()", attrCred|attrNamespaces, func(p *Peer) error {
		if d := p.Namespaces.Differ(hostNamespaces, hostKinds...); len(d) > 0 {
			return fmt.Errorf("peer is not on the host: its %s %s not the host's (%s)",
				kindList(d), plural(len(d), "namespace is", "namespaces are"), nsList(p.Namespaces, d))
		}
		return nil
	})
}

// SameNamespaces passes a peer that shares this process's namespaces of
// the given kinds (of every kind when none is given), taken when the rule
// is built. SameNamespaces(NetNamespace) passes a peer that sees the same
// network; SameNamespaces(UserNamespace, PIDNamespace) one that is in the
// same container as the listener, or like it on the host.
func SameNamespaces(kinds ...NamespaceKind) Rule {
	if err := checkKinds(kinds); err != nil {
		return invalid("samenamespaces", err)
	}
	if len(kinds) == 0 {
		kinds = NamespaceKinds()
	}
	kinds = slices.Clone(kinds)
	own, err := OwnNamespaces()
	if err != nil {
		return invalid("samenamespaces", err)
	}
	desc := "samenamespaces(" + kindList(kinds) + ")"
	return leaf("samenamespaces", desc, attrCred|attrNamespaces, func(p *Peer) error {
		if d := p.Namespaces.Differ(own, kinds...); len(d) > 0 {
			return fmt.Errorf("peer's %s %s not this process's (peer %s, listener %s)",
				kindList(d), plural(len(d), "namespace is", "namespaces are"), nsList(p.Namespaces, d), nsList(own, d))
		}
		return nil
	})
}

func kindList(kinds []NamespaceKind) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

func nsList(n Namespaces, kinds []NamespaceKind) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = string(k) + ":[" + strconv.FormatUint(n.ID(k), 10) + "]"
	}
	return strings.Join(s, " ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Cgroup passes a peer whose cgroup path (Peer.Cgroup) matches one of the
// glob patterns, in which '*' matches any run of characters, '/'
// included, '?' any single character, and '\' makes the next character
// literal: Cgroup("/system.slice/docker-*.scope") passes every process of
// every Docker container run with the systemd cgroup driver. The path is
// read when the listener accepts the connection, not at connect().
//
// A cgroup proves only what its owner allows: root can move any process
// into any cgroup, and the owner of a delegated subtree (user@<uid>.service,
// units with Delegate=yes, a container's own cgroup namespace) can create
// any name below it. See docs/containers.md.
func Cgroup(patterns ...string) Rule {
	if len(patterns) == 0 {
		return invalid("cgroup", errors.New("no patterns given"))
	}
	for _, pat := range patterns {
		if err := validGlob(pat); err != nil {
			return invalid("cgroup", err)
		}
		if !strings.HasPrefix(pat, "/") && !strings.HasPrefix(pat, "*") {
			return invalid("cgroup", fmt.Errorf("pattern %q matches no cgroup path: paths start with '/'", pat))
		}
	}
	patterns = slices.Clone(patterns)
	return leaf("cgroup", "cgroup("+strings.Join(patterns, ", ")+")", attrCred|attrCgroup, func(p *Peer) error {
		for _, pat := range patterns {
			if globMatch(pat, p.Cgroup) {
				return nil
			}
		}
		return fmt.Errorf("peer cgroup %q matches none of %s", p.Cgroup, orList(patterns))
	})
}

// Unit passes a peer whose systemd unit (Peer.Unit) is one of names, or,
// for a name that ends in ".slice", whose unit is inside that slice:
// Unit("sshd.service"), Unit("docker.service", "system.slice"). Names are
// compared exactly, without patterns (use Cgroup for patterns).
//
// The unit is the one systemd itself reports for the process (as
// sd_pid_get_unit does): the first component of the cgroup path after the
// slices. Subtrees that systemd delegates cannot fake it: every process
// of a user's service manager is in "user@<uid>.service", whatever unit
// names the user creates below it, and cgroups that a Delegate=yes
// service creates below itself stay in that service. Root can move any
// process into any unit, so against a root peer Unit proves nothing that
// UID(0) does not.
func Unit(names ...string) Rule {
	if len(names) == 0 {
		return invalid("unit", errors.New("no unit names given"))
	}
	for _, n := range names {
		if err := validUnitName(n); err != nil {
			return invalid("unit", err)
		}
	}
	names = slices.Clone(names)
	return leaf("unit", "unit("+strings.Join(names, ", ")+")", attrCred|attrCgroup, func(p *Peer) error {
		info := cgroupUnits(p.Cgroup)
		for _, n := range names {
			if n == info.unit || (info.unit != "" && strings.HasSuffix(n, ".slice") && slices.Contains(info.slices, n)) {
				return nil
			}
		}
		if info.unit == "" {
			return fmt.Errorf("peer cgroup %q is in no systemd unit, so it is not in %s", p.Cgroup, orList(names))
		}
		return fmt.Errorf("peer unit %q (cgroup %q) is not %s", info.unit, p.Cgroup, orList(names))
	})
}

// unitSuffixes are the kinds of systemd unit that have a cgroup.
var unitSuffixes = []string{".service", ".scope", ".slice", ".socket", ".mount", ".swap"}

func isUnitName(s string) bool {
	for _, suf := range unitSuffixes {
		if len(s) > len(suf) && strings.HasSuffix(s, suf) {
			return true
		}
	}
	return false
}

func validUnitName(n string) error {
	switch {
	case strings.ContainsAny(n, "/\x00\n"):
		return fmt.Errorf("%q is not a unit name: it contains '/', NUL or a newline", n)
	case n == "-.slice":
		return errors.New(`"-.slice" is the root slice, which holds every process: use Anyone`)
	case !isUnitName(n):
		return fmt.Errorf("%q is not the name of a unit that holds processes: it must end in %s", n, strings.Join(unitSuffixes, ", "))
	}
	return nil
}

// cgroupInfo is what a cgroup path tells about systemd units.
type cgroupInfo struct {
	path     string
	unit     string   // the system unit: first non-slice component
	slice    string   // the innermost slice that holds unit
	userUnit string   // the unit inside user@<uid>.service
	slices   []string // the slices that hold unit, outermost first
}

// cgroupUnits derives the systemd unit from a cgroup path as systemd
// does (cg_path_get_unit): skip the leading slices, then the next
// component is the unit if it is a unit name. Below a user manager
// (user@<uid>.service) the same is done again for the user unit.
func cgroupUnits(path string) cgroupInfo {
	info := cgroupInfo{path: path}
	comps := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	i := 0
	for ; i < len(comps) && strings.HasSuffix(cgUnescape(comps[i]), ".slice"); i++ {
		info.slices = append(info.slices, cgUnescape(comps[i]))
	}
	if i == len(comps) || !isUnitName(cgUnescape(comps[i])) {
		info.slices = nil
		return info
	}
	info.unit = cgUnescape(comps[i])
	if len(info.slices) > 0 {
		info.slice = info.slices[len(info.slices)-1]
	}
	if isUserManager(info.unit) {
		j := i + 1
		for j < len(comps) && strings.HasSuffix(cgUnescape(comps[j]), ".slice") {
			j++
		}
		if j < len(comps) && isUnitName(cgUnescape(comps[j])) {
			info.userUnit = cgUnescape(comps[j])
		}
	}
	return info
}

// cgUnescape undoes systemd's escaping of cgroup names that would clash
// with the kernel's files: a leading '_' is dropped.
func cgUnescape(s string) string {
	return strings.TrimPrefix(s, "_")
}

// isUserManager reports whether unit is a user's service manager,
// user@<uid>.service, whose subtree systemd delegates to that user.
func isUserManager(unit string) bool {
	id, ok := strings.CutPrefix(unit, "user@")
	if !ok {
		return false
	}
	id, ok = strings.CutSuffix(id, ".service")
	if !ok || id == "" {
		return false
	}
	_, err := strconv.ParseUint(id, 10, 32)
	return err == nil
}

// parseCgroupFile returns the cgroup path from the text of
// /proc/<pid>/cgroup. Each line is "hierarchy-id:controllers:path". The
// cgroup v2 line ("0::/path") wins; on a legacy (v1) or hybrid layout, the
// line of the name=systemd hierarchy is used when there is no v2 line or
// the process sits at the root of the v2 hierarchy, as it does when
// nothing manages the v2 hierarchy of a hybrid layout.
func parseCgroupFile(s string) (string, error) {
	var v2, sd string
	var haveV2, haveSD bool
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || id == "" || !strings.HasPrefix(path, "/") {
			return "", fmt.Errorf("malformed cgroup line %q", line)
		}
		switch {
		case id == "0" && ctrls == "":
			if haveV2 {
				return "", errors.New("more than one cgroup v2 line")
			}
			v2, haveV2 = path, true
		case slices.Contains(strings.Split(ctrls, ","), "name=systemd"):
			if haveSD {
				return "", errors.New("more than one name=systemd line")
			}
			sd, haveSD = path, true
		}
	}
	var path string
	switch {
	case haveV2 && (v2 != "/" || !haveSD):
		path = v2
	case haveSD:
		path = sd
	default:
		return "", errors.New("no cgroup v2 (0::) or name=systemd line")
	}
	if strings.HasSuffix(path, " (deleted)") {
		return "", fmt.Errorf("the cgroup %q was removed", path)
	}
	return path, nil
}
