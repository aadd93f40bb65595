//go:build !linux

package secnet

import (
	"fmt"
	"net"
	"runtime"
)

// readPeer is not implemented outside Linux: every peer is rejected, with a
// reason that names the operating system.
func readPeer(c *net.UnixConn, want attrs, p *Peer, opts readOptions) {
	p.fail(want, fmt.Errorf("reading peer credentials on %s: %w", runtime.GOOS, ErrUnsupported))
}
