package secnet

import (
	"context"
	"net"
	"sync"
	"time"
)

// verifyCtx is the context of one verification: done at its deadline, or
// when the listener is closed, and then it aborts the connection (see
// abortConn). Each worker has one and reuses it for every connection it
// verifies, so that a verification allocates nothing for its deadline
// (context.WithTimeout allocates a context, a timer and its registration
// with the parent, and takes the parent's lock, for every connection).
// verify must not keep it after it returns.
type verifyCtx struct {
	timeout time.Duration // 0: no deadline
	timer   *time.Timer   // fires at the deadline; made on the first use

	mu       sync.Mutex
	active   bool // a verification runs
	conn     net.Conn
	deadline time.Time
	err      error
	done     chan struct{} // closed when err is set; replaced after
	funcs    []func()      // AfterFunc functions, run when err is set

	// running counts the AfterFunc functions started and not returned,
	// and an abortConn in progress: the functions read Err (a child
	// context's cancel does), so end waits for them before it resets err
	// for the next verification, and for the abort so that the
	// connection is closed when end reports it aborted.
	running sync.WaitGroup
}

// begin starts the verification of c.
func (x *verifyCtx) begin(c net.Conn) {
	x.mu.Lock()
	x.active, x.conn, x.err = true, c, nil
	if x.timeout > 0 {
		x.deadline = time.Now().Add(x.timeout)
		if x.timer == nil {
			x.timer = time.AfterFunc(x.timeout, x.expire)
		} else {
			x.timer.Reset(x.timeout)
		}
	}
	x.mu.Unlock()
}

// end ends the verification and reports whether the context was done
// before it ended (the connection was aborted then).
func (x *verifyCtx) end() (aborted bool) {
	x.mu.Lock()
	x.active = false // no finish starts from now on
	x.mu.Unlock()
	x.running.Wait()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.timer != nil {
		x.timer.Stop()
	}
	aborted = x.err != nil
	x.active, x.conn, x.err, x.funcs = false, nil, nil, nil
	if aborted {
		x.done = nil // closed: the next verification gets a new one
	}
	return aborted
}

// expire is the timer's function.
func (x *verifyCtx) expire() {
	x.mu.Lock()
	if !x.active || time.Now().Before(x.deadline) {
		x.mu.Unlock() // a timer of a verification that has ended
		return
	}
	x.finish(context.DeadlineExceeded)
}

// cancel ends the verification in progress, if any, because the listener
// is closed.
func (x *verifyCtx) cancel() {
	x.mu.Lock()
	if !x.active {
		x.mu.Unlock()
		return
	}
	x.finish(context.Canceled)
}

// finish sets err, called with mu held, which it releases.
func (x *verifyCtx) finish(err error) {
	if x.err != nil {
		x.mu.Unlock()
		return
	}
	x.err = err
	if x.done != nil {
		close(x.done)
	}
	funcs, c := x.funcs, x.conn
	x.funcs = nil
	for _, f := range funcs {
		if f != nil {
			x.running.Add(1)
		}
	}
	// end waits for the abort too: a rejection is reported once the
	// connection is closed.
	x.running.Add(1)
	x.mu.Unlock()
	abortConn(c)
	x.running.Done()
	for _, f := range funcs {
		if f != nil {
			go func() { defer x.running.Done(); f() }()
		}
	}
}

func (x *verifyCtx) Deadline() (time.Time, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.deadline, x.timeout > 0
}

func (x *verifyCtx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
		if x.err != nil {
			close(x.done)
		}
	}
	return x.done
}

func (x *verifyCtx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

func (x *verifyCtx) Value(any) any { return nil }

// AfterFunc arranges for f to run in its own goroutine once x is done, as
// context.AfterFunc does (which calls it, instead of starting a goroutine
// to wait for Done).
func (x *verifyCtx) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	if x.err != nil {
		x.running.Add(1)
		x.mu.Unlock()
		go func() { defer x.running.Done(); f() }()
		return func() bool { return false }
	}
	i := len(x.funcs)
	x.funcs = append(x.funcs, f)
	x.mu.Unlock()
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		if i < len(x.funcs) && x.funcs[i] != nil {
			x.funcs[i] = nil
			return true
		}
		return false
	}
}
