package secnet

import (
	"net"
	"testing"
	"time"
)

// closeWaitConn is a connection whose Close waits for release, as the
// Close of a socket does while another goroutine's system call still uses
// its descriptor.
type closeWaitConn struct {
	net.Conn
	release, closed chan struct{}
}

func (c *closeWaitConn) Close() error {
	<-c.release
	close(c.closed)
	return nil
}

// A verification cut off at its deadline ends (and is reported as
// rejected) only once its connection is closed: Rejected is called after
// the connection is closed.
func TestVerifyCtxEndWaitsForTheAbort(t *testing.T) {
	c := &closeWaitConn{release: make(chan struct{}), closed: make(chan struct{})}
	x := &verifyCtx{timeout: time.Millisecond}
	done := x.Done()
	x.begin(c)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the deadline did not fire within 20s")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		close(c.release)
	}()
	if !x.end() {
		t.Fatal("end reports no abort after the deadline fired")
	}
	select {
	case <-c.closed:
	default:
		t.Fatal("end returned while the connection was still being closed")
	}
}
