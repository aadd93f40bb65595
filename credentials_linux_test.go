package secnet

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestProgramRule(t *testing.T) {
	bin := peerBinary(t)
	dir := sockDir(t)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "copy")
	if err := copyExecutable(cp); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		rule   Rule
		peer   string // executable the client runs
		accept bool
		reason string
	}{
		{"match", Program(bin), bin, true, ""},
		{"mismatch", Program("/bin/sh"), bin, false, "is not /bin/sh"},
		{"symlinked rule path", Program(link), bin, true, ""},
		{"copy at another path", Program(bin), cp, false, "program " + strconv.Quote(cp) + " is not " + bin},
		{"copy allowed by its own path", Program(cp), cp, true, ""},
		{"one of several", Program("/bin/sh", bin), bin, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := listen(t, tt.rule)
			startClient(t, tt.peer, h.path, "talk", nil)
			c, rej := h.next(t)
			switch {
			case tt.accept && rej != nil:
				t.Fatalf("rejected: %v", rej)
			case !tt.accept && c != nil:
				t.Fatalf("accepted %v", c.Peer())
			case !tt.accept && !strings.Contains(rej.Error(), tt.reason):
				t.Fatalf("reason %q does not say %q", rej, tt.reason)
			}
		})
	}
}

func TestProgramDeletedBinary(t *testing.T) {
	testDeletedBinary(t, func(cp string) Rule { return Program(cp) })
}

// testDeletedBinary runs a peer from a copy of the test binary, deletes or
// replaces the copy (as package managers do: a new file renamed over the
// old one), then lets the peer connect: the rule made for the copy must
// reject it with ErrProgramDeleted.
func testDeletedBinary(t *testing.T, rule func(cp string) Rule) {
	for _, replace := range []bool{false, true} {
		name := map[bool]string{false: "deleted", true: "replaced"}[replace]
		t.Run(name, func(t *testing.T) {
			cp := filepath.Join(sockDir(t), "peer")
			if err := copyExecutable(cp); err != nil {
				t.Fatal(err)
			}
			h := listen(t, rule(cp))
			cl := startClient(t, cp, h.path, "wait", nil)
			if replace {
				if err := copyExecutable(cp + ".new"); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(cp+".new", cp); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(cp); err != nil {
				t.Fatal(err)
			}
			cl.stdin.Write([]byte("go\n"))
			rej := h.mustReject(t)
			if !errors.Is(rej, ErrProgramDeleted) {
				t.Fatalf("rejection %v, want ErrProgramDeleted", rej)
			}
		})
	}
}

func TestProgramPeerExited(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		name := map[bool]string{false: "pidfd", true: "start-time fallback"}[fallback]
		t.Run(name, func(t *testing.T) {
			bin := peerBinary(t)
			h := listen(t, UID(os.Getuid()), Program(bin))
			h.ln.v.opts.noPeerPidfd = fallback
			cl := startClient(t, bin, h.path, "exit", nil)
			cl.wait(t) // the peer has exited before the listener accepts
			rej := h.mustReject(t)
			if !errors.Is(rej, ErrPeerExited) {
				t.Fatalf("rejection %v, want ErrPeerExited", rej)
			}
			if len(rej.Failures) != 1 || rej.Failures[0].Rule != "program" {
				t.Errorf("failures = %v, want only program (uid is connect-time and still known)", rej.Failures)
			}
		})
	}
}

func TestProgramFallbackMatches(t *testing.T) {
	bin := peerBinary(t)
	h := listen(t, Program(bin))
	h.ln.v.opts.noPeerPidfd = true
	startClient(t, bin, h.path, "talk", nil)
	if c := h.mustAccept(t); c.Peer().Program != bin {
		t.Fatalf("program = %q, want %q", c.Peer().Program, bin)
	}
}

// TestCredentialRules checks every credential rule against a peer run as
// uid 1 (daemon), gid 1, supplementary groups 4 (adm) and 5 (tty).
func TestCredentialRules(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	h := listen(t, Anyone())
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1, Groups: []uint32{4, 5}}}
	startClient(t, bin, h.path, "hold", cred)
	p := h.mustAccept(t).Peer()
	if p.UID != 1 || p.GID != 1 || !sameInts(p.Groups, []int{4, 5}) {
		t.Fatalf("peer = %v, want uid 1 gid 1 groups [4 5]", &p)
	}
	if n, err := p.Username(); err != nil || n != "daemon" {
		t.Errorf("Username = %q, %v", n, err)
	}
	if ns, err := p.GroupNames(); err != nil || strings.Join(ns, ",") != "daemon,adm,tty" {
		t.Errorf("GroupNames = %q, %v", ns, err)
	}
	tests := []struct {
		rule   Rule
		reason string // "" passes
	}{
		{UID(1), ""},
		{UID(0, 1000), "peer uid 1 is not 0 or 1000"},
		{GID(1), ""},
		{GID(4), "primary gid 1 is not 4"},
		{InGroup(5), ""},
		{InGroup(1), ""},
		{InGroup(7, 8), "in none of the groups 7 or 8"},
		{User("daemon"), ""},
		{User("root"), "is not user root"},
		{User("root", "no-such-user-x"), `rule user: no user named "no-such-user-x" exists`},
		{Group("adm"), ""},
		{Group("daemon"), ""},
		{Group("lp"), "is not group lp"},
		{SameUser(), "is not this process's uid 0"},
		{AnyOf(UID(0), UID(1)), ""},
		{AnyOf(UID(0), User("root")), "none of the alternatives passed: uid: peer uid 1 is not 0; user: "},
		{AllOf(UID(1), GID(1)), ""},
		{AllOf(UID(1), GID(0), InGroup(0)), "gid: peer primary gid 1 is not 0; ingroup: "},
		{Not(UID(1)), "peer matches uid(1)"},
		{Not(UID(0)), ""},
		{RuleFunc("odd-uid", func(p *Peer) error {
			if p.UID%2 == 1 {
				return nil
			}
			return errors.New("even")
		}), ""},
	}
	for _, tt := range tests {
		err := tt.rule.Check(&p)
		switch {
		case tt.reason == "" && err != nil:
			t.Errorf("%s: %v, want pass", tt.rule, err)
		case tt.reason != "" && err == nil:
			t.Errorf("%s passed, want %q", tt.rule, tt.reason)
		case tt.reason != "" && !strings.Contains(err.Error(), tt.reason):
			t.Errorf("%s: %q, want it to say %q", tt.rule, err, tt.reason)
		}
	}
	// The same rules through a listener, as a whole policy.
	h2 := listen(t, User("daemon"), Group("tty"), Not(GID(0)))
	startClient(t, bin, h2.path, "talk", cred)
	h2.mustAccept(t)
	h3 := listen(t, User("daemon"), Group("lp"))
	startClient(t, bin, h3.path, "talk", cred)
	if rej := h3.mustReject(t); len(rej.Failures) != 1 || rej.Failures[0].Rule != "group" {
		t.Fatalf("rejection %v, want group only", rej)
	}
}

// TestNotFailsClosed checks that Not of a rule that cannot read the
// identity fails instead of passing.
func TestNotFailsClosed(t *testing.T) {
	bin := peerBinary(t)
	h := listen(t, Not(Program("/bin/sh")))
	cl := startClient(t, bin, h.path, "exit", nil)
	cl.wait(t)
	if rej := h.mustReject(t); !errors.Is(rej, ErrPeerExited) {
		t.Fatalf("rejection %v, want ErrPeerExited", rej)
	}
	h2 := listen(t, AnyOf(UID(os.Getuid()), Program("/bin/sh")))
	cl2 := startClient(t, bin, h2.path, "exit", nil)
	cl2.wait(t)
	h2.mustAccept(t) // uid alone decides; the unreadable program does not matter
}

// TestUserNamespacePeer runs the peer as root of a user namespace that maps
// its uid 0 to host uid 100000, as a remapped container does.
func TestUserNamespacePeer(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	h := listen(t, UID(100000), GID(100000))
	attr := &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 1}},
		Credential:  &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
	}
	startClient(t, bin, h.path, "hold", attr)
	p := h.mustAccept(t).Peer()
	if p.UID != 100000 || p.GID != 100000 {
		t.Fatalf("peer = %v, want the translated ids 100000", &p)
	}
	if p.Program != bin {
		t.Errorf("Program = %q, want %q", p.Program, bin)
	}
}

// TestUnmappedPeerIDs runs the listener in a user namespace that maps only
// its own root: a host peer running as uid 1 has no mapping there and
// shows up as the overflow ids.
func TestUnmappedPeerIDs(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	sock := filepath.Join(sockDir(t), "s")
	srv := startPeer(t, bin, "server", &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}, "SECNET_TEST_SOCK="+sock, "SECNET_TEST_RULES=uid=1;uid=65534")
	if got := srv.line(t); got != "ready" {
		t.Fatalf("server: %s", got)
	}
	startClient(t, bin, sock, "exit", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}})
	var rep serverReport
	if err := json.Unmarshal([]byte(srv.line(t)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.UID != 65534 || rep.GID != 65534 {
		t.Fatalf("listener in a user namespace saw uid %d gid %d, want the overflow ids 65534", rep.UID, rep.GID)
	}
	if rep.Verdicts["uid=1"] == "pass" {
		t.Error("UID(1) matched a peer whose uid is unmapped")
	}
}

// TestPIDNamespaceListener runs the listener in a new pid namespace: a
// host peer's pid is not visible there (SO_PEERCRED gives 0).
func TestPIDNamespaceListener(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	sock := filepath.Join(sockDir(t), "s")
	srv := startPeer(t, bin, "server", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID},
		"SECNET_TEST_SOCK="+sock, "SECNET_TEST_RULES=uid=0;program="+bin)
	if got := srv.line(t); got != "ready" {
		t.Fatalf("server: %s", got)
	}
	startClient(t, bin, sock, "talk", nil)
	var rep serverReport
	if err := json.Unmarshal([]byte(srv.line(t)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.PID != 0 {
		t.Fatalf("pid = %d, want 0 (not visible)", rep.PID)
	}
	if rep.Verdicts["uid=0"] != "pass" {
		t.Errorf("UID(0): %s, want pass", rep.Verdicts["uid=0"])
	}
	if v := rep.Verdicts["program="+bin]; !strings.Contains(v, "another pid namespace") {
		t.Errorf("Program: %q, want a reason naming the other pid namespace", v)
	}
}

func TestParseStartTime(t *testing.T) {
	stat := "1234 (a) b) (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615"
	got, err := parseStartTime(stat)
	if err != nil || got != 98765 {
		t.Fatalf("parseStartTime = %d, %v, want 98765", got, err)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 notanumber"} {
		if _, err := parseStartTime(bad); err == nil {
			t.Errorf("parseStartTime(%q): no error", bad)
		}
	}
}
