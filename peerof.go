package secnet

import (
	"net"
	"reflect"
)

// PeerOf returns the identity of the peer of c when c is a *SecureConn,
// or a wrapper around one: a connection with a NetConn() net.Conn method
// (as *tls.Conn has) or a struct that embeds the connection (an exported
// embedded field such as net.Conn or *secnet.SecureConn), at any depth.
// It reports false for a connection that secnet did not verify.
//
// Like (*SecureConn).Peer, it reads the parts of the identity that the
// listener's rules did not need on the first call.
func PeerOf(c net.Conn) (Peer, bool) {
	sc := secureConnOf(c)
	if sc == nil {
		return Peer{}, false
	}
	return sc.Peer(), true
}

// maxUnwrap bounds the layers of wrappers secureConnOf looks through, so
// that a wrapper that returns itself cannot loop.
const maxUnwrap = 16

// secureConnOf finds the *SecureConn inside c, or returns nil.
func secureConnOf(c net.Conn) *SecureConn {
	for range maxUnwrap {
		switch x := c.(type) {
		case nil:
			return nil
		case *SecureConn:
			return x // nil when a wrapper held a nil *SecureConn
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			c = embeddedConn(c)
		}
	}
	return nil
}

// embeddedConn returns the connection held by the first exported embedded
// field of the struct (or pointer to struct) c whose value is a net.Conn.
func embeddedConn(c net.Conn) net.Conn {
	v := reflect.ValueOf(c)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.Anonymous || !f.IsExported() {
			continue
		}
		if inner, ok := v.Field(i).Interface().(net.Conn); ok {
			return inner
		}
	}
	return nil
}
