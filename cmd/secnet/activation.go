package main

import (
	"fmt"
	"net"

	"github.com/coreos/go-systemd/v22/activation"
)

// activatedSocket is a listening socket passed by systemd.
type activatedSocket struct {
	name string // its FileDescriptorName=, or LISTEN_FD_<n>
	ln   *net.UnixListener
}

// activatedListeners returns the listening sockets systemd passed to this
// process (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), none when it was not
// socket-activated. It unsets those variables, so that no child process
// takes them for its own. Each must be a Unix stream socket.
func activatedListeners() ([]activatedSocket, error) {
	var out []activatedSocket
	fail := func(err error) ([]activatedSocket, error) {
		for _, a := range out {
			a.ln.Close()
		}
		return nil, err
	}
	files := activation.Files(true)
	for i, f := range files {
		name, fd := f.Name(), f.Fd()
		l, err := net.FileListener(f) // a copy of the descriptor
		f.Close()
		if err != nil {
			for _, rest := range files[i+1:] {
				rest.Close()
			}
			return fail(fmt.Errorf("socket %q passed by systemd (fd %d) is not a listening stream socket: %v", name, fd, err))
		}
		ul, ok := l.(*net.UnixListener)
		if !ok || ul.Addr().Network() != "unix" {
			l.Close()
			for _, rest := range files[i+1:] {
				rest.Close()
			}
			return fail(fmt.Errorf("socket %q passed by systemd (fd %d) is a %s socket, not a Unix stream socket (ListenStream=PATH)", name, fd, l.Addr().Network()))
		}
		// The socket file belongs to systemd: closing must not remove it.
		ul.SetUnlinkOnClose(false)
		out = append(out, activatedSocket{name: name, ln: ul})
	}
	return out, nil
}
