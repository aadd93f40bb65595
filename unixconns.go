package secnet

import "net"

// UnixConns returns l as a net.Listener whose Accept returns each
// connection that l verified as the *net.UnixConn inside its *SecureConn.
// It is for code that asserts that type to read the peer's credentials
// itself, such as ttrpc's UnixCredentialsFunc handshakers, tailscale's
// peercred or snapd's ucrednet: given the *SecureConn that Accept returns,
// they find no Unix socket and give up.
//
// The connections are verified exactly as l verifies them, and rejected
// peers never reach Accept. What the *net.UnixConn lacks is the identity
// that secnet read: PeerOf reports false for it, and with KeepPidfd the
// peer's pidfd is released when Accept returns it, so there is no
// Recheck. Close and Addr are l's.
func (l *Listener) UnixConns() net.Listener { return unixConns{l} }

type unixConns struct{ l *Listener }

func (u unixConns) Accept() (net.Conn, error) {
	sc, err := u.l.AcceptSecure()
	if err != nil {
		return nil, err
	}
	if sc.held != nil {
		sc.held.close()
	}
	return sc.UnixConn, nil
}

func (u unixConns) Close() error   { return u.l.Close() }
func (u unixConns) Addr() net.Addr { return u.l.Addr() }
