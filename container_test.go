package secnet

import (
	"errors"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// containerRule builds the rules of this file for runServer from a spec
// "key=value"; ok is false for an unknown key.
func containerRule(k, v string) (r Rule, ok bool) {
	list := strings.Split(v, ",")
	switch k {
	case "gid", "ingroup", "notuid":
		id, _ := strconv.Atoi(v)
		switch k {
		case "gid":
			return GID(id), true
		case "ingroup":
			return InGroup(id), true
		}
		return Not(UID(id)), true
	case "user":
		return User(list...), true
	case "group":
		return Group(list...), true
	case "sameuser":
		return SameUser(), true
	case "onhost":
		return OnHost(), true
	case "samens":
		kinds := make([]NamespaceKind, len(list))
		for i, s := range list {
			kinds[i] = NamespaceKind(s)
		}
		return SameNamespaces(kinds...), true
	case "cgroup":
		return Cgroup(list...), true
	case "unit":
		return Unit(list...), true
	}
	return Rule{}, false
}

// readPeerOf returns a peer as the reader leaves it after reading every
// attribute, with the given fields, for rule tests that need no process.
func readPeerOf(p Peer) *Peer {
	p.known = attrAll
	if own, err := OwnNamespaces(); err == nil && p.Namespaces == (Namespaces{}) {
		p.Namespaces = own // in the listener's namespaces unless told otherwise
	}
	return &p
}

func TestParseCgroupFile(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
		err              bool
	}{
		{"v2", "0::/system.slice/sshd.service\n", "/system.slice/sshd.service", false},
		{"hybrid, v2 managed", "9:name=systemd:/system.slice/a.service\n4:memory:/x\n0::/system.slice/a.service\n", "/system.slice/a.service", false},
		{"hybrid, v2 at root", "9:name=systemd:/system.slice/docker-1.scope\n4:memory:/docker/1\n0::/\n", "/system.slice/docker-1.scope", false},
		{"hybrid, both at root", "9:name=systemd:/\n0::/\n", "/", false},
		{"legacy", "12:pids:/x\n1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n", "/user.slice/user-1000.slice/session-2.scope", false},
		{"v2 only at root", "0::/\n", "/", false},
		{"colon in path", "0::/a:b.scope\n", "/a:b.scope", false},
		{"outside the cgroup namespace", "0::/../../x.scope\n", "/../../x.scope", false},
		{"no usable line", "4:memory:/docker/1\n", "", true},
		{"empty", "", "", true},
		{"malformed", "0:/x\n", "", true},
		{"two v2 lines", "0::/a.service\n0::/b.service\n", "", true},
		{"deleted", "0::/a.scope (deleted)\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCgroupFile(tc.file)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("parseCgroupFile(%q) = %q, %v; want %q, error %v", tc.file, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestCgroupUnits(t *testing.T) {
	for _, tc := range []struct {
		path, unit, slice, userUnit string
	}{
		{"/system.slice/sshd.service", "sshd.service", "system.slice", ""},
		{"/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service", "system-getty.slice", ""},
		// A Delegate=yes service's own subtree does not change its unit.
		{"/system.slice/ci.service/payload/sshd.service", "ci.service", "system.slice", ""},
		{"/system.slice/docker-0123abcd.scope", "docker-0123abcd.scope", "system.slice", ""},
		{"/user.slice/user-1000.slice/session-4.scope", "session-4.scope", "user-1000.slice", ""},
		// A user's units: the system unit is the user manager.
		{"/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service", "user@1000.service", "user-1000.slice", "sshd.service"},
		{"/user.slice/user-1000.slice/user@1000.service/init.scope", "user@1000.service", "user-1000.slice", "init.scope"},
		{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ab.scope/container", "user@1000.service", "user-1000.slice", "libpod-ab.scope"},
		{"/machine.slice/libpod-ab.scope/container", "libpod-ab.scope", "machine.slice", ""},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice/cri-containerd-ab.scope", "cri-containerd-ab.scope", "kubepods-burstable-pod1_2.slice", ""},
		{"/init.scope", "init.scope", "", ""},
		{"/system.slice/_cpu.service", "cpu.service", "system.slice", ""},
		// Not systemd's: no unit.
		{"/", "", "", ""},
		{"/system.slice", "", "", ""},
		{"/docker/0123abcd", "", "", ""},
		{"/kubepods/burstable/pod12/ab", "", "", ""},
		{"/../../system.slice/sshd.service", "", "", ""},
	} {
		got := cgroupUnits(tc.path)
		if got.unit != tc.unit || got.slice != tc.slice || got.userUnit != tc.userUnit {
			t.Errorf("cgroupUnits(%s) = unit %q slice %q user unit %q; want %q %q %q",
				tc.path, got.unit, got.slice, got.userUnit, tc.unit, tc.slice, tc.userUnit)
		}
	}
}

func TestUnitAndCgroupRules(t *testing.T) {
	sshd := readPeerOf(Peer{Cgroup: "/system.slice/sshd.service"})
	userSSHD := readPeerOf(Peer{Cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service"})
	delegated := readPeerOf(Peer{Cgroup: "/system.slice/ci.service/sshd.service"})
	docker := readPeerOf(Peer{Cgroup: "/system.slice/docker-0123.scope"})
	root := readPeerOf(Peer{Cgroup: "/"})
	for _, tc := range []struct {
		rule Rule
		peer *Peer
		pass bool
	}{
		{Unit("sshd.service"), sshd, true},
		{Unit("sshd.service"), userSSHD, false},
		{Unit("sshd.service"), delegated, false},
		{Unit("ci.service"), delegated, true},
		{Unit("user@1000.service"), userSSHD, true},
		{Unit("user.slice"), userSSHD, true},
		{Unit("user-1000.slice"), userSSHD, true},
		{Unit("app.slice"), userSSHD, false}, // the user's own slice
		{Unit("system.slice"), sshd, true},
		{Unit("system.slice"), root, false},
		{Unit("cron.service", "sshd.service"), sshd, true},
		{Not(Unit("sshd.service")), docker, true},
		{Not(Unit("sshd.service")), sshd, false},
		{Cgroup("/system.slice/docker-*.scope"), docker, true},
		{Cgroup("/system.slice/docker-*.scope"), sshd, false},
		{Cgroup("*/sshd.service"), userSSHD, true},
		{Cgroup("/system.slice/sshd.service"), delegated, false},
		{Not(Cgroup("/system.slice/docker-*")), sshd, true},
	} {
		err := tc.rule.Check(tc.peer)
		if (err == nil) != tc.pass {
			t.Errorf("%s on %s: %v, want pass=%v", tc.rule, tc.peer.Cgroup, err, tc.pass)
		}
	}
	err := Unit("sshd.service").Check(root)
	if err == nil || !strings.Contains(err.Error(), "in no systemd unit") {
		t.Errorf("Unit on a peer in no unit: %v, want a reason that says so", err)
	}
	err = Unit("sshd.service").Check(userSSHD)
	if err == nil || !strings.Contains(err.Error(), "user@1000.service") {
		t.Errorf("Unit on a user unit: %v, want a reason naming user@1000.service", err)
	}
}

func TestContainerRulesNeedTheirAttributes(t *testing.T) {
	// What a listener reads for each rule, and a peer whose process could
	// not be read: every rule fails, and so does Not of it.
	for _, r := range []Rule{Unit("a.service"), Cgroup("/*"), OnHost(), SameNamespaces(NetNamespace)} {
		if r.Err() != nil {
			t.Fatalf("%s: %v", r, r.Err())
		}
		want := attrCred | attrCgroup
		if r.name == "onhost" || r.name == "samenamespaces" {
			want = attrCred | attrNamespaces
		}
		if r.need != want {
			t.Errorf("%s needs %v, want %v", r, r.need, want)
		}
		p := readPeerOf(Peer{})
		p.errs.cgroup, p.errs.namespaces, p.errs.program = ErrPIDNotVisible, ErrPIDNotVisible, ErrPIDNotVisible
		for _, rr := range []Rule{r, Not(r)} {
			if err := rr.Check(p); !errors.Is(err, ErrPIDNotVisible) {
				t.Errorf("%s on a peer in another pid namespace: %v, want ErrPIDNotVisible", rr, err)
			}
		}
	}
}

func TestInvalidContainerRules(t *testing.T) {
	for _, tc := range []struct {
		rule Rule
		want string
	}{
		{Unit(), "no unit names"},
		{Unit("sshd"), "must end in"},
		{Unit("system.slice/sshd.service"), "'/'"},
		{Unit("-.slice"), "root slice"},
		{Cgroup(), "no patterns"},
		{Cgroup("system.slice/*"), "start with '/'"},
		{Cgroup(`/a\`), "lone"},
		{SameNamespaces("time"), `unknown namespace kind "time"`},
	} {
		if err := tc.rule.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Err = %v, want it to say %q", tc.rule, err, tc.want)
		}
	}
}

func TestNamespacesDiffer(t *testing.T) {
	a := Namespaces{User: 1, PID: 2, Mount: 3, Net: 4, Cgroup: 5, IPC: 6, UTS: 7}
	b := a
	b.Net, b.PID = 40, 20
	if d := a.Differ(b); !slices.Equal(d, []NamespaceKind{PIDNamespace, NetNamespace}) {
		t.Errorf("Differ = %v, want [pid net]", d)
	}
	if d := a.Differ(b, UserNamespace, MountNamespace); len(d) != 0 {
		t.Errorf("Differ(user, mnt) = %v, want none", d)
	}
	if got, want := a.String(), "user:[1] pid:[2] mnt:[3] net:[4] cgroup:[5] ipc:[6] uts:[7]"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	host := readPeerOf(Peer{Namespaces: Namespaces{User: hostNamespaces.User, PID: hostNamespaces.PID,
		Mount: 99, Net: 98, Cgroup: hostNamespaces.Cgroup, IPC: hostNamespaces.IPC, UTS: hostNamespaces.UTS}})
	if err := OnHost().Check(host); err != nil {
		t.Errorf("OnHost on a peer in the initial namespaces but its own mnt and net: %v", err)
	}
	ctr := *host
	ctr.Namespaces.PID, ctr.Namespaces.UTS = 5, 6
	err := OnHost().Check(&ctr)
	if err == nil || !strings.Contains(err.Error(), "pid, uts namespaces are not the host's") {
		t.Errorf("OnHost on a peer in its own pid and uts namespaces: %v", err)
	}
	if err := Not(OnHost()).Check(&ctr); err != nil {
		t.Errorf("Not(OnHost) on a container peer: %v", err)
	}
}

func TestFullIDMap(t *testing.T) {
	for m, want := range map[string]bool{
		"         0          0 4294967295\n": true,
		"0 0 1\n":                            false,
		"0 100000 65536\n":                   false,
		"0 0 1000\n1000 1000 4294966295\n":   true,
		"":                                   false,
		"garbage\n":                          false,
		"0 0 4294967295 extra\n":             false,
	} {
		if got := fullIDMap(m); got != want {
			t.Errorf("fullIDMap(%q) = %v, want %v", m, got, want)
		}
	}
}

// TestOverflowIDs checks the rules on a peer whose ids the listener's
// user namespace does not map; container_linux_test.go checks the same
// with a real listener in a user namespace.
func TestOverflowIDs(t *testing.T) {
	ovf := overflowIDs{uid: 65534, gid: 65534, uidOvf: true, gidOvf: true}
	unmapped := readPeerOf(Peer{UID: 65534, GID: 65534, Groups: []int{4, 65534}, ovf: ovf})
	mapped := readPeerOf(Peer{UID: 1000, GID: 1000, Groups: []int{4}, ovf: ovf})
	_, nobodyErr := user.Lookup("nobody")
	_, nogroupErr := user.LookupGroup("nogroup")
	for _, tc := range []struct {
		rule    Rule
		peer    *Peer
		pass    bool
		unknown bool // fails because the id is unknown (so Not fails too)
		skip    error
	}{
		{UID(65534), unmapped, true, false, nil},
		{UID(0, 1000), unmapped, false, true, nil},
		{Not(UID(0)), unmapped, false, true, nil},
		{AnyOf(Not(UID(0)), UID(65534)), unmapped, true, false, nil},
		{SameUser(), unmapped, false, true, nil},
		{GID(65534), unmapped, true, false, nil},
		{GID(4), unmapped, false, true, nil},
		{InGroup(65534), unmapped, true, false, nil},
		{InGroup(4), unmapped, true, false, nil}, // a known group it holds
		{InGroup(5), unmapped, false, true, nil},
		{Not(InGroup(5)), unmapped, false, true, nil},
		{User("nobody"), unmapped, false, true, nobodyErr},
		{Group("nogroup"), unmapped, false, true, nogroupErr},
		{Group("nogroup"), mapped, false, false, nogroupErr},
		{Not(UID(0)), mapped, true, false, nil},
		{UID(1000), mapped, true, false, nil},
	} {
		if tc.skip != nil {
			t.Logf("skipping %s: %v", tc.rule, tc.skip)
			continue
		}
		err := tc.rule.Check(tc.peer)
		if (err == nil) != tc.pass || isUnknownDeep(err) != tc.unknown {
			t.Errorf("%s on %v: %v, want pass=%v unknown=%v", tc.rule, tc.peer, err, tc.pass, tc.unknown)
		}
		if tc.unknown && err != nil && !strings.Contains(err.Error(), "overflow id") {
			t.Errorf("%s on %v: %v, want a reason that names the overflow id", tc.rule, tc.peer, err)
		}
	}
	if !unmapped.UnmappedIDs() || mapped.UnmappedIDs() {
		t.Errorf("UnmappedIDs = %v, %v; want true, false", unmapped.UnmappedIDs(), mapped.UnmappedIDs())
	}
	// In the initial user namespace every id is mapped: 65534 is nobody.
	host := readPeerOf(Peer{UID: 65534, GID: 65534})
	if nobodyErr == nil {
		if err := User("nobody").Check(host); err != nil {
			t.Errorf("User(nobody) on the real nobody: %v", err)
		}
	}
	if host.UnmappedIDs() {
		t.Error("UnmappedIDs on a peer read in the initial user namespace")
	}
}

// isUnknownDeep reports whether err, or the reason of a combinator, says
// that the identity could not be known.
func isUnknownDeep(err error) bool {
	var u *unknownError
	return errors.As(err, &u)
}
