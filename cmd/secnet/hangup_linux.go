package main

import (
	"net"

	"golang.org/x/sys/unix"
)

// waitHangup waits, after c's peer has sent its end of stream, until the
// peer closes its end altogether (POLLHUP: both directions shut down) and
// reports true; it reports false when c is closed first. A peer that only
// half-closed and still reads keeps it waiting. Shutting down c's own
// sending side (at the end of the other direction) also ends the wait,
// as the pipe is over then anyway.
func waitHangup(c *net.UnixConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	hup := false
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		if err == nil && n == 1 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			hup = true
			return true
		}
		return false // the poller wakes this up at the next event on c
	})
	return err == nil && hup
}
