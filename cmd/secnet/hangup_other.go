//go:build !linux

package main

import "net"

// waitHangup is not implemented here: a client that closed its end while
// the upstream stays silent holds its slot until the upstream closes or
// --idle-timeout passes.
func waitHangup(c *net.UnixConn) bool { return false }
