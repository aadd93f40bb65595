package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// bufSize is the size of the copy buffers where splice cannot be used:
// large, so that bulk transfers take few system calls.
const bufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// pipeOptions tune pipe.
type pipeOptions struct {
	noSplice bool          // copy through buffers even where splice works (for tests)
	idle     time.Duration // close both sides after this long without a byte moved; 0: never
}

// errIdle is the error of a pipe closed by its idle timeout.
var errIdle = errors.New("idle timeout: no data either way")

// errHangup is the error of a pipe whose client closed its end: nobody
// is left to read what the upstream might still send.
var errHangup = errors.New("the client closed its end while the upstream was silent")

// pipe copies a to b and b to a until both directions end, passing each
// end of stream on with CloseWrite (half-close), so that a peer that
// shuts down its sending side still gets the reply. An error in one
// direction closes both connections. Once a has sent its end of stream,
// a that closes altogether (a hangup, not a half-close) ends the pipe
// too, even while b stays silent. It returns the bytes copied each way
// and the first error.
func pipe(a, b *net.UnixConn, o pipeOptions) (aToB, bToA int64, err error) {
	var act *activity
	var idleErr atomic.Bool
	if o.idle > 0 {
		act = newActivity(o.idle, func() { idleErr.Store(true); a.Close(); b.Close() })
		defer act.stop()
	}
	var hungUp atomic.Bool
	errs := make(chan error, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		var err error
		aToB, err = copyHalf(b, a, o, act)
		errs <- err
		if err == nil && waitHangup(a) {
			hungUp.Store(true)
			a.Close()
			b.Close()
		}
	}()
	bToA, err = copyHalf(a, b, o, act)
	if err2 := <-errs; err == nil {
		err = err2
	}
	a.SetReadDeadline(time.Unix(1, 0)) // ends waitHangup
	<-watched
	switch {
	case idleErr.Load():
		err = errIdle
	case err != nil && hungUp.Load():
		err = errHangup
	}
	return aToB, bToA, err
}

// copyHalf copies src to dst, then shuts down dst's sending side; on an
// error it closes both.
func copyHalf(dst, src *net.UnixConn, o pipeOptions, act *activity) (n int64, err error) {
	handled := false
	if !o.noSplice {
		n, handled, err = spliceStream(dst, src, act)
	}
	if !handled {
		buf := bufPool.Get().(*[]byte)
		// *net.UnixConn implements neither io.WriterTo nor io.ReaderFrom,
		// so CopyBuffer uses buf.
		var r io.Reader = src
		if act != nil {
			r = &touchReader{src, act}
		}
		var m int64
		m, err = io.CopyBuffer(dst, r, *buf)
		n += m
		bufPool.Put(buf)
	}
	if err == nil {
		err = dst.CloseWrite()
	}
	if err != nil {
		dst.Close()
		src.Close()
	}
	return n, err
}

// activity closes a pipe that moved nothing for its idle time.
type activity struct {
	idle  time.Duration
	last  atomic.Int64 // time of the last byte moved, in ns since start
	start time.Time
	timer *time.Timer
}

func newActivity(idle time.Duration, expire func()) *activity {
	a := &activity{idle: idle, start: time.Now()}
	a.timer = time.AfterFunc(idle, func() {
		quiet := time.Duration(int64(time.Since(a.start)) - a.last.Load())
		if quiet >= a.idle {
			expire()
			return
		}
		a.timer.Reset(a.idle - quiet)
	})
	return a
}

// touch records that data moved; nil-safe.
func (a *activity) touch() {
	if a != nil {
		a.last.Store(int64(time.Since(a.start)))
	}
}

func (a *activity) stop() { a.timer.Stop() }

// touchReader records every read that returned data.
type touchReader struct {
	r   io.Reader
	act *activity
}

func (t *touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.act.touch()
	}
	return n, err
}
