//go:build !linux

package secnet

import (
	"fmt"
	"runtime"
)

// OwnNamespaces returns the ids of the namespaces of the calling process.
// Namespaces are a Linux feature: elsewhere it returns an error that names
// the operating system.
func OwnNamespaces() (Namespaces, error) {
	return Namespaces{}, fmt.Errorf("reading namespaces on %s: %w", runtime.GOOS, ErrUnsupported)
}
