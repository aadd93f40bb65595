package secnet

import (
	"strings"
	"syscall"
	"testing"
)

// A user with subordinate ids can enter a user namespace of its own and
// connect as one of those ids, or with its supplementary groups dropped:
// a deny rule on ids must not let it in (issue 11). The peers here are
// real processes in new user namespaces, as newuidmap/newgidmap would
// set them up.
func TestNotOfIDRulesInAnotherUserNamespace(t *testing.T) {
	requireLinux(t)
	requireRoot(t)
	bin := peerBinary(t)
	host := func(uid uint32, groups ...uint32) *syscall.SysProcAttr {
		return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: groups}}
	}
	// userns is a process of host uid and gid hostID, root in a user
	// namespace of its own, with its supplementary groups dropped.
	userns := func(hostID int) *syscall.SysProcAttr {
		return &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: hostID, Size: 1}},
			GidMappingsEnableSetgroups: true,
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
		}
	}
	for _, tc := range []struct {
		name   string
		rule   Rule
		attr   *syscall.SysProcAttr
		accept bool
		reason string
	}{
		{"deny-listed uid", Not(UID(1)), host(1), false, "peer matches uid(1)"},
		{"other uid", Not(UID(1)), host(2), true, ""},
		{"subordinate uid", Not(UID(1)), userns(100000), false, "peer runs in another user namespace"},
		{"member of the group", Not(InGroup(4242)), host(1, 4242), false, "peer matches ingroup(4242)"},
		{"not a member", Not(InGroup(4242)), host(1, 5), true, ""},
		{"groups dropped", Not(InGroup(4242)), userns(1), false, "peer runs in another user namespace"},
		{"groups dropped, nested", AllOf(UID(1), Not(AnyOf(InGroup(4242), GID(4242)))), userns(1), false, "peer runs in another user namespace"},
		{"allow-list", AllOf(UID(1), GID(1)), userns(1), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := listen(t, Anyone(), tc.rule)
			startClient(t, bin, h.path, "hold", tc.attr).line(t)
			c, rej := h.next(t)
			switch {
			case tc.accept && rej != nil:
				t.Fatalf("rejected: %v", rej)
			case !tc.accept && c != nil:
				p := c.Peer()
				t.Fatalf("accepted %v (user namespace %d)", &p, p.Namespaces.User)
			case !tc.accept && !strings.Contains(rej.Error(), tc.reason):
				t.Fatalf("rejected with %v, want %q", rej, tc.reason)
			}
		})
	}
}
