package secnet

import "net"

// readConnCred reads SO_PEERCRED of c's peer for acceptLoop.
func readConnCred(c net.Conn) connCred {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return connCred{}
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return connCred{}
	}
	var cr connCred
	rc.Control(func(fd uintptr) {
		// A failure, or what a socket without credentials gives, is left
		// to the verification, which reads and reports it.
		uc, err := peerCred(int(fd))
		if err == nil && !(uc.Pid == 0 && uc.Uid == ^uint32(0) && uc.Gid == ^uint32(0)) {
			cr = connCred{pid: int(uc.Pid), uid: int(uc.Uid), gid: int(uc.Gid), ok: true}
		}
	})
	return cr
}
