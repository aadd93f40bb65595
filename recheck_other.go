//go:build !linux

package secnet

import (
	"fmt"
	"net"
	"runtime"
)

// holdPeer is not implemented outside Linux, where no peer is accepted.
func holdPeer(c *net.UnixConn, p *Peer, opts readOptions) *heldPeer {
	return &heldPeer{err: fmt.Errorf("keeping the peer's pidfd on %s: %w", runtime.GOOS, ErrUnsupported)}
}

func (h *heldPeer) recheck() error { return h.err }
