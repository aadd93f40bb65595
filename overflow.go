package secnet

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// defaultOverflowID is the overflow uid and gid when
// /proc/sys/kernel/overflow{uid,gid} cannot be read.
const defaultOverflowID = 65534

// overflowIDs describes how the listener's user namespace shows ids that
// it does not map. The kernel shows such a uid as overflowuid and such a
// gid as overflowgid (both 65534 by default). In the initial user
// namespace every id is mapped, so there 65534 is the real user nobody
// and never an overflow id. The zero value marks no id as overflow.
type overflowIDs struct {
	uid, gid       int
	uidOvf, gidOvf bool // the namespace leaves some ids unmapped
}

// isUID reports whether uid, as the kernel translated it for the
// listener, may be the overflow uid: an id unknown to the listener.
func (o overflowIDs) isUID(uid int) bool { return o.uidOvf && uid == o.uid }

// isGID reports the same for a gid.
func (o overflowIDs) isGID(gid int) bool { return o.gidOvf && gid == o.gid }

// ownOverflowIDs returns the overflow ids of this process's user
// namespace. They are read once: the sysctls are set at boot, and a
// multithreaded process (every Go program) cannot change its user
// namespace.
var ownOverflowIDs = sync.OnceValue(func() overflowIDs {
	return overflowIDs{
		uid:    readOverflowID("/proc/sys/kernel/overflowuid"),
		gid:    readOverflowID("/proc/sys/kernel/overflowgid"),
		uidOvf: !mapsEveryID("/proc/self/uid_map"),
		gidOvf: !mapsEveryID("/proc/self/gid_map"),
	}
})

func readOverflowID(name string) int {
	b, err := os.ReadFile(name)
	if err != nil {
		return defaultOverflowID
	}
	id, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return defaultOverflowID
	}
	return id
}

// mapsEveryID reports whether the id map file (/proc/self/uid_map) maps
// all 2^32-1 ids, as it does in the initial user namespace only. A map
// that cannot be read counts as partial: 65534 is then treated as
// unknown, which fails closed.
func mapsEveryID(name string) bool {
	b, err := os.ReadFile(name)
	if err != nil {
		return false
	}
	return fullIDMap(string(b))
}

// fullIDMap reports whether the text of an id map maps every id.
func fullIDMap(m string) bool {
	var total uint64
	for _, line := range strings.Split(m, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return false
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return false
		}
		total += n
	}
	return total >= 1<<32-1
}

// UnmappedIDs reports whether the peer's uid, primary gid or one of its
// supplementary groups may be an id that has no mapping in the listener's
// user namespace, which the kernel shows as the overflow id (65534). Such
// an id is unknown, not the user nobody: UID, GID, InGroup, User, Group
// and SameUser fail on it, and Not of them fails too, unless the rule
// names the overflow id as a number (UID(65534), GID(65534),
// InGroup(65534)). In the initial user namespace, where every id is
// mapped, UnmappedIDs is always false.
func (p *Peer) UnmappedIDs() bool {
	_, gid := p.unmappedGID()
	return gid || p.ovf.isUID(p.UID)
}

// unmappedError is the reason a uid, gid, user or group rule fails on an
// overflow id; it is an unknownError, so that Not fails too.
func unmappedError(what string, id int) error {
	nobody, allow := "the user nobody", fmt.Sprintf("uid(%d)", id)
	if what != "uid" {
		nobody, allow = "the group nogroup", fmt.Sprintf("gid(%d) or ingroup(%d)", id, id)
	}
	return &unknownError{fmt.Errorf("peer %s %d is the overflow id: the peer's id has no mapping in this process's user namespace, so it is unknown (not %s); a policy allows it only explicitly, with %s",
		what, id, nobody, allow)}
}

// unmappedGID returns the first of the peer's gids that may be the
// overflow gid.
func (p *Peer) unmappedGID() (int, bool) {
	for _, g := range p.gids() {
		if p.ovf.isGID(g) {
			return g, true
		}
	}
	return 0, false
}
