//go:build !linux

package secnet

import "net"

// listenerServer reports nothing outside Linux: the uid of a listening
// socket's creator is not known there.
func listenerServer(net.Listener) serverID { return serverID{} }

// parentUID reports nothing outside Linux.
func parentUID(int) (int, bool) { return 0, false }
