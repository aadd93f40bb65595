//go:build !linux

package secnet

import (
	"fmt"
	"runtime"
)

// PeerOfProcess returns the identity of the running process pid. It is
// implemented for Linux only; elsewhere it returns an error naming the
// operating system.
func PeerOfProcess(pid int) (Peer, error) {
	return Peer{}, fmt.Errorf("secnet: reading process %d on %s: %w", pid, runtime.GOOS, ErrUnsupported)
}
