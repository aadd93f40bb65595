//go:build !linux

package secnet

import (
	"context"
	"fmt"
	"runtime"
)

// procHandle holds nothing outside Linux.
type procHandle struct{}

func (h *procHandle) release() {}

// readIdentity is not implemented outside Linux: every peer is rejected,
// with a reason that names the operating system.
func readIdentity(ctx context.Context, id *identity, want attrs) {
	id.peer.fail(want, fmt.Errorf("reading peer credentials on %s: %w", runtime.GOOS, ErrUnsupported))
}
