package secnet

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// nsByStat reads the namespace ids of pid the other way, with stat, to
// check what secnet reads with readlink.
func nsByStat(t *testing.T, pid int) Namespaces {
	t.Helper()
	var n Namespaces
	for _, k := range NamespaceKinds() {
		fi, err := os.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, k))
		if err != nil {
			t.Fatal(err)
		}
		*n.field(k) = fi.Sys().(*syscall.Stat_t).Ino
	}
	return n
}

// remapped are the process attributes of a container whose root is host
// uid and gid 100000, in its own user, pid, mount, network, uts and ipc
// namespaces (as a runtime with userns-remap starts one).
func remapped() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS |
			syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 1}},
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}
}

func mustConnect(t *testing.T, cl *peerProc) {
	t.Helper()
	if got := cl.line(t); got != "connected" {
		t.Fatalf("client: %q, want connected", got)
	}
}

func TestRemappedContainerPeer(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	h := listen(t, UID(100000), SameNamespaces(CgroupNamespace), Program(bin))
	cl := startClient(t, bin, h.path, "hold", remapped())
	mustConnect(t, cl)
	c := h.mustAccept(t)
	if k := c.id.peer.known; k != attrCred|attrNamespaces|attrProgram {
		t.Errorf("the listener read %v, want credentials, program, namespaces", k)
	}
	p := c.Peer()
	if p.PID != cl.cmd.Process.Pid || p.UID != 100000 || p.GID != 100000 {
		t.Errorf("peer = %v, want pid %d uid 100000 gid 100000 (container root as the host sees it)", &p, cl.cmd.Process.Pid)
	}
	if want := nsByStat(t, cl.cmd.Process.Pid); p.Namespaces != want {
		t.Errorf("Namespaces = %v, want %v", p.Namespaces, want)
	}
	own, err := OwnNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	want := []NamespaceKind{UserNamespace, PIDNamespace, MountNamespace, NetNamespace, IPCNamespace, UTSNamespace}
	if d := p.Namespaces.Differ(own); !slices.Equal(d, want) {
		t.Errorf("namespaces that differ from the listener's: %v, want %v", d, want)
	}
	if p.UnmappedIDs() {
		t.Error("UnmappedIDs: the host maps every id")
	}
	for _, tc := range []struct {
		rule Rule
		pass bool
	}{
		{UID(0), false}, // container root is not host root
		{UID(100000), true},
		{GID(100000), true},
		{OnHost(), false},
		{Not(OnHost()), true},
		{SameNamespaces(CgroupNamespace), true},
		{SameNamespaces(NetNamespace), false},
		{Not(SameNamespaces(NetNamespace)), true},
		{SameNamespaces(), false},
		{Program(bin), true}, // Program compares files, across mount namespaces
	} {
		if err := tc.rule.Check(&p); (err == nil) != tc.pass {
			t.Errorf("%s: %v, want pass=%v", tc.rule, err, tc.pass)
		}
	}
	if ok, err := p.SharesNamespaces(NetNamespace); ok || err != nil {
		t.Errorf("SharesNamespaces(net) = %v, %v; want false", ok, err)
	}
	if ok, err := p.SharesNamespaces(CgroupNamespace); !ok || err != nil {
		t.Errorf("SharesNamespaces(cgroup) = %v, %v; want true", ok, err)
	}

	// The listener itself rejects it with OnHost.
	h2 := listen(t, OnHost())
	cl2 := startClient(t, bin, h2.path, "hold", remapped())
	mustConnect(t, cl2)
	rej := h2.mustReject(t)
	if msg := rej.Error(); !strings.Contains(msg, "not on the host") || !strings.Contains(msg, "user") {
		t.Errorf("rejection %q does not say that the peer's user namespace is not the host's", msg)
	}
}

func TestHostPeerNamespaces(t *testing.T) {
	bin := peerBinary(t)
	own, err := OwnNamespaces()
	if err != nil {
		t.Skip("cannot read this process's namespaces:", err)
	}
	rules := []Rule{SameNamespaces()}
	onHost := len(own.Differ(hostNamespaces, hostKinds...)) == 0
	if onHost {
		rules = append(rules, OnHost())
	} else {
		t.Logf("the tests run in a container (%v): OnHost is not checked", own)
	}
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("noPeerPidfd=%v", fallback), func(t *testing.T) {
			h := listen(t, rules...)
			h.ln.v.opts.noPeerPidfd = fallback
			cl := startClient(t, bin, h.path, "hold", nil)
			mustConnect(t, cl)
			c := h.mustAccept(t)
			p := c.Peer()
			if p.Namespaces != own {
				t.Errorf("Namespaces = %v, want the listener's %v", p.Namespaces, own)
			}
			if ok, err := p.SharesNamespaces(); !ok || err != nil {
				t.Errorf("SharesNamespaces() = %v, %v; want true", ok, err)
			}
			b, err := os.ReadFile("/proc/self/cgroup")
			if err != nil {
				t.Fatal(err)
			}
			if cg, err := parseCgroupFile(string(b)); err != nil || p.Cgroup != cg {
				t.Errorf("Cgroup = %q, want the listener's %q (%v)", p.Cgroup, cg, err)
			}
			if p.Program != bin || p.Err() != nil {
				t.Errorf("peer %v: Err = %v", &p, p.Err())
			}
		})
	}
}

// startServer runs the test binary as a server in attr that checks the
// rules in spec on the one peer it accepts; it returns the socket path
// once the server listens.
func startServer(t *testing.T, attr *syscall.SysProcAttr, rules string) (*peerProc, string) {
	t.Helper()
	sock := filepath.Join(sockDir(t), "s")
	srv := startPeer(t, peerBinary(t), "server", attr, "SECNET_TEST_SOCK="+sock, "SECNET_TEST_RULES="+rules)
	if got := srv.line(t); got != "ready" {
		t.Fatalf("server: %q, want ready", got)
	}
	return srv, sock
}

func (p *peerProc) report(t *testing.T) serverReport {
	t.Helper()
	var rep serverReport
	if err := json.Unmarshal([]byte(p.line(t)), &rep); err != nil {
		t.Fatal("server report:", err)
	}
	return rep
}

// TestOverflowIDsInUserNamespace runs the listener in a user namespace
// that maps only root, and connects from host uid 1 (daemon), gid 1 and
// supplementary group 4 (adm): none of them has a mapping there.
func TestOverflowIDsInUserNamespace(t *testing.T) {
	requireRoot(t)
	rules := "uid=65534;uid=1;notuid=0;user=nobody;group=nogroup;gid=65534;ingroup=65534;ingroup=4;sameuser"
	srv, sock := startServer(t, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}, rules)
	cl := startClient(t, peerBinary(t), sock, "hold",
		&syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1, Groups: []uint32{4}}})
	mustConnect(t, cl)
	rep := srv.report(t)
	if rep.UID != 65534 || rep.GID != 65534 || !rep.Unmapped {
		t.Errorf("the listener saw uid %d gid %d unmapped=%v; want the overflow ids 65534, unmapped", rep.UID, rep.GID, rep.Unmapped)
	}
	for spec, pass := range map[string]bool{
		"uid=65534":     true, // named explicitly
		"gid=65534":     true,
		"ingroup=65534": true,
		"uid=1":         false,
		"notuid=0":      false, // unknown is not "not root"
		"user=nobody":   false, // a name never matches an overflow id
		"group=nogroup": false,
		"ingroup=4":     false,
		"sameuser":      false,
	} {
		v, ok := rep.Verdicts[spec]
		switch {
		case !ok:
			t.Errorf("%s: no verdict", spec)
		case pass && v != "pass":
			t.Errorf("%s: %s, want pass", spec, v)
		case !pass && (v == "pass" || !strings.Contains(v, "overflow id")):
			t.Errorf("%s: %s, want a failure because of the overflow id", spec, v)
		}
	}
}

// TestPeerPIDNotVisible runs the listener in a new pid namespace, where
// the host client's pid is not visible: SO_PEERCRED gives pid 0.
func TestPeerPIDNotVisible(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	rules := "uid=0;program=" + bin + ";cgroup=/*;unit=sshd.service;onhost;samens=net"
	srv, sock := startServer(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}, rules)
	cl := startClient(t, bin, sock, "hold", nil)
	mustConnect(t, cl)
	rep := srv.report(t)
	if rep.PID != 0 || rep.UID != 0 {
		t.Errorf("the listener saw pid %d uid %d, want pid 0 uid 0", rep.PID, rep.UID)
	}
	if !strings.Contains(rep.Err, "another pid namespace") {
		t.Errorf("Peer.Err = %q, want it to say the peer is in another pid namespace", rep.Err)
	}
	for _, spec := range strings.Split(rules, ";") {
		v := rep.Verdicts[spec]
		if spec == "uid=0" {
			if v != "pass" {
				t.Errorf("%s: %s, want pass (uid rules do not need the pid)", spec, v)
			}
		} else if !strings.Contains(v, "another pid namespace") {
			t.Errorf("%s: %q, want a failure because the peer is in another pid namespace", spec, v)
		}
	}
}

// cgroup2Root returns the mount point of a cgroup v2 hierarchy that shows
// its root, or skips the test.
func cgroup2Root(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skip("no /proc/self/mountinfo:", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		pre, post, ok := strings.Cut(s.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if ok && len(a) >= 5 && len(b) >= 1 && b[0] == "cgroup2" && a[3] == "/" {
			return a[4]
		}
	}
	t.Skip("no cgroup v2 hierarchy is mounted")
	return ""
}

// mkCgroup creates the cgroup dir below root (and its parents) and
// removes what it created after the test, once the peers have exited.
func mkCgroup(t *testing.T, root, dir string) string {
	t.Helper()
	var created []string
	p := root
	for _, c := range strings.Split(dir, "/") {
		p = filepath.Join(p, c)
		err := os.Mkdir(p, 0755)
		switch {
		case err == nil:
			created = append(created, p)
		case errors.Is(err, os.ErrExist):
		default:
			t.Skipf("cannot create a cgroup: %v", err)
		}
	}
	t.Cleanup(func() {
		for i := len(created) - 1; i >= 0; i-- {
			if err := os.Remove(created[i]); err != nil {
				t.Errorf("removing test cgroup: %v", err)
			}
		}
	})
	return p
}

// startInCgroup starts a client in "wait" mode, moves it into cg, and
// lets it connect.
func startInCgroup(t *testing.T, bin, sock, cg string) *peerProc {
	t.Helper()
	cl := startClient(t, bin, sock, "wait", nil)
	if cg != "" {
		pid := strconv.Itoa(cl.cmd.Process.Pid)
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(pid), 0); err != nil {
			t.Skipf("cannot move a process into a cgroup: %v", err)
		}
	}
	if _, err := cl.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestCgroupAndUnit(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	root := cgroup2Root(t)
	scope := "secnet-test-" + strconv.Itoa(os.Getpid()) + ".scope"
	// The clients' cleanups (registered later, run earlier) wait for them
	// to exit before these cgroups are removed.
	inScope := mkCgroup(t, root, "secnet-test.slice/"+scope)
	userUnit := mkCgroup(t, root, "secnet-test.slice/user@4242.service/app.slice/"+scope)

	h := listen(t, Unit(scope))
	cl := startInCgroup(t, bin, h.path, inScope)
	c := h.mustAccept(t)
	if k := c.id.peer.known; k != attrCred|attrCgroup {
		t.Errorf("a Unit rule read %v, want credentials and cgroup only", k)
	}
	if got := cl.line(t); got != "pong" {
		t.Errorf("client got %q, want pong", got)
	}
	p := c.Peer()
	if want := "/secnet-test.slice/" + scope; p.Cgroup != want || p.Unit != scope || p.Slice != "secnet-test.slice" || p.UserUnit != "" {
		t.Errorf("cgroup %q unit %q slice %q user unit %q; want %q %q secnet-test.slice none",
			p.Cgroup, p.Unit, p.Slice, p.UserUnit, want, scope)
	}
	for _, tc := range []struct {
		rule Rule
		pass bool
	}{
		{Unit("secnet-test.slice"), true},
		{Unit("sshd.service"), false},
		{Not(Unit("sshd.service")), true},
		{Cgroup("/secnet-test.slice/secnet-test-*.scope"), true},
		{Cgroup("/system.slice/*"), false},
	} {
		if err := tc.rule.Check(&p); (err == nil) != tc.pass {
			t.Errorf("%s: %v, want pass=%v", tc.rule, err, tc.pass)
		}
	}

	// A user unit of the same name, below a user manager: the unit is the
	// manager, whatever the user names its cgroups.
	startInCgroup(t, bin, h.path, userUnit)
	rej := h.mustReject(t)
	if msg := rej.Error(); !strings.Contains(msg, `peer unit "user@4242.service"`) || !strings.Contains(msg, `cgroup="/secnet-test.slice/user@4242.service/app.slice/`+scope) {
		t.Errorf("rejection of a user unit: %q, want it to name user@4242.service and the cgroup", msg)
	}
	if rej.Peer.UserUnit != scope {
		t.Errorf("UserUnit = %q, want %q", rej.Peer.UserUnit, scope)
	}
	// A client left in the test's own cgroup.
	startInCgroup(t, bin, h.path, "")
	rej = h.mustReject(t)
	if rej.Failures[0].Rule != "unit" {
		t.Errorf("rejection of a client outside the unit: %v", rej)
	}
}

// BenchmarkPeerProcessAttrs compares what reading each part of the
// identity costs, with accepting on a plain net.Listener in the same run.
func BenchmarkPeerProcessAttrs(b *testing.B) {
	path := filepath.Join(b.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	b.Run("plain-accept", func(b *testing.B) {
		for b.Loop() {
			c, err := net.Dial("unix", path)
			if err != nil {
				b.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
			c.Close()
		}
	})
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, bc := range []struct {
		name string
		want attrs
	}{
		{"cred", attrCred},
		{"program", attrCred | attrProgram},
		{"cgroup", attrCred | attrCgroup},
		{"namespaces", attrCred | attrNamespaces},
		{"program+cgroup+namespaces", attrCred | procAttrs},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				p := (&identity{conn: s.(*net.UnixConn)}).load(bc.want)
				if err := p.Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
