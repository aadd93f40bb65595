//go:build !linux

package secnet

import (
	"fmt"
	"runtime"
)

// hold is not implemented outside Linux, where no peer is accepted.
func (id *identity) hold() *heldPeer {
	return &heldPeer{err: fmt.Errorf("keeping the peer's pidfd on %s: %w", runtime.GOOS, ErrUnsupported)}
}

func (h *heldPeer) recheck() error { return h.err }
