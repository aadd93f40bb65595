package secnet

import (
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// listenerServer returns the uid of the process that created the
// listening socket of ln, as its clients see it: SO_PEERCRED on a
// listening socket reports the credentials of its listen() (for a socket
// inherited from systemd, those of systemd).
func listenerServer(ln net.Listener) serverID {
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		return serverID{}
	}
	rc, err := ul.SyscallConn()
	if err != nil {
		return serverID{}
	}
	var id serverID
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			id = serverID{uid: int(cred.Uid), known: true}
		}
	})
	return id
}

// ownUIDMap is this process's /proc/self/uid_map, read once: a
// multithreaded process cannot change its user namespace.
var ownUIDMap = sync.OnceValue(func() string {
	b, _ := os.ReadFile("/proc/self/uid_map")
	return string(b)
})

// parentUID returns uid of this process's user namespace as the parent
// user namespace sees it.
func parentUID(uid int) (int, bool) {
	return mapUp(ownUIDMap(), uid)
}

// mapUp translates id through the lines "inside outside count" of an id
// map.
func mapUp(m string, id int) (int, bool) {
	for _, line := range strings.Split(m, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		out, err2 := strconv.ParseUint(f[1], 10, 32)
		n, err3 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		if u := uint64(id); u >= in && u-in < n {
			return int(out + u - in), true
		}
	}
	return 0, false
}
