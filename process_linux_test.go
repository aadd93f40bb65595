package secnet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestPeerOfProcess(t *testing.T) {
	bin := peerBinary(t)
	// A client in "wait" mode waits on its stdin before it does anything.
	cl := startClient(t, bin, filepath.Join(sockDir(t), "none"), "wait", nil)
	p, err := PeerOfProcess(cl.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	groups, _ := os.Getgroups()
	if p.PID != cl.cmd.Process.Pid || p.UID != os.Geteuid() || p.GID != os.Getegid() || !sameInts(p.Groups, groups) || p.Program != bin {
		t.Errorf("PeerOfProcess = %v, want pid %d uid %d gid %d groups %v program %s",
			&p, cl.cmd.Process.Pid, os.Geteuid(), os.Getegid(), groups, bin)
	}
	if err := p.Err(); err != nil {
		t.Errorf("Err = %v", err)
	}
	if err := Program(bin).Check(&p); err != nil {
		t.Errorf("program rule: %v", err)
	}
	// The child shares this process's namespaces and cgroup: rules on
	// them decide from what PeerOfProcess read, not from zero values.
	own, err := OwnNamespaces()
	if err != nil {
		t.Skip("own namespaces:", err)
	}
	if p.Namespaces != own {
		t.Errorf("PeerOfProcess namespaces = %+v, want this process's %+v", p.Namespaces, own)
	}
	if err := SameNamespaces().Check(&p); err != nil {
		t.Errorf("samenamespaces rule: %v", err)
	}
	if cg, err := readCgroup(os.Getpid()); err == nil {
		if p.Cgroup != cg.path {
			t.Errorf("PeerOfProcess cgroup = %q, want this process's %q", p.Cgroup, cg.path)
		}
		if err := Cgroup(cg.path).Check(&p); err != nil {
			t.Errorf("cgroup rule: %v", err)
		}
	}
	cl.stdin.Close()
	cl.wait(t)
	if _, err := PeerOfProcess(cl.cmd.Process.Pid); !errors.Is(err, ErrPeerExited) {
		t.Errorf("PeerOfProcess of a reaped process: %v, want ErrPeerExited", err)
	}
	if _, err := PeerOfProcess(0); err == nil {
		t.Error("PeerOfProcess(0) succeeded")
	}
}

func TestPeerOfProcessOtherUser(t *testing.T) {
	requireRoot(t)
	bin := peerBinary(t)
	attr := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 4, Groups: []uint32{5}}}
	cl := startClient(t, bin, filepath.Join(sockDir(t), "none"), "wait", attr)
	p, err := PeerOfProcess(cl.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != 1 || p.GID != 4 || !sameInts(p.Groups, []int{5}) {
		t.Errorf("PeerOfProcess = %v, want uid 1 gid 4 groups [5]", &p)
	}
	if err := InGroup(5).Check(&p); err != nil {
		t.Errorf("ingroup(5): %v", err)
	}
	if err := UID(0).Check(&p); err == nil || !strings.Contains(err.Error(), "uid 1 is not 0") {
		t.Errorf("uid(0) = %v", err)
	}
}
