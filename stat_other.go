//go:build !unix

package secnet

import (
	"fmt"
	"runtime"
)

func statFileID(path string) (fileID, error) {
	return fileID{}, fmt.Errorf("comparing files on %s: %w", runtime.GOOS, ErrUnsupported)
}

func lstatFileID(path string) (fileID, error) { return statFileID(path) }

func lstatSocket(path string) (sockID, error) {
	return sockID{}, fmt.Errorf("comparing files on %s: %w", runtime.GOOS, ErrUnsupported)
}
