//go:build !linux

package secnet

import "net"

// readConnCred reads nothing: peers are not verified on this system, and
// their connections share their slots.
func readConnCred(net.Conn) connCred { return connCred{} }
