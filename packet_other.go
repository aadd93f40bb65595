//go:build !linux

package secnet

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

// packetSys holds nothing outside Linux.
type packetSys struct{}

// listenPacket is not implemented outside Linux: the kernels there attach
// no sender credentials to datagrams that secnet reads.
func listenPacket(ctx context.Context, lc *ListenConfig, network, address string, v verifier) (*PacketConn, error) {
	return nil, listenError(network, address, fmt.Errorf("verified datagram sockets on %s: %w", runtime.GOOS, ErrUnsupported))
}

func (c *PacketConn) readMsg(b []byte, want attrs) (int, *net.UnixAddr, Peer, *RejectError, error) {
	return 0, nil, Peer{}, nil, c.opError("read", fmt.Errorf("verified datagram sockets on %s: %w", runtime.GOOS, ErrUnsupported))
}
