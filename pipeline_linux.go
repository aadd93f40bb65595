package secnet

import "net"

// connUID returns the uid of c's peer from SO_PEERCRED, or noUID.
func connUID(c net.Conn) uint32 {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return noUID
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return noUID
	}
	uid := noUID
	rc.Control(func(fd uintptr) {
		if cred, err := peerCred(int(fd)); err == nil {
			uid = cred.Uid
		}
	})
	return uid
}
