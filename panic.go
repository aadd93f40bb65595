package secnet

import (
	"fmt"
	"runtime/debug"
)

// A PanicError is the reason of a peer rejected because the function of
// a RuleFunc or Handshake rule panicked while it verified the peer. A
// panicking rule fails closed (also under Not) and the listener goes on
// with other peers, as net/http goes on after a handler panics; the
// rejection reaches the Rejected function like any other.
//
// A Dialer's Handshake function that panics makes Dial fail with a
// PanicError too.
type PanicError struct {
	Rule  string // the rule's name
	Value any    // what the function passed to panic
	Stack []byte // the panicking goroutine's stack (runtime/debug.Stack)
}

// Error says which rule panicked and with what. A string value is quoted:
// it may hold what the peer sent.
func (e *PanicError) Error() string {
	if s, ok := e.Value.(string); ok {
		return fmt.Sprintf("%s panicked: %q", e.Rule, s)
	}
	return fmt.Sprintf("%s panicked: %v", e.Rule, e.Value)
}

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// recoverRule turns a panic of the function of rule into *err, when the
// function did not return (*returned is false): a panic(nil) under
// GODEBUG=panicnil=1, which recover reports as nil, fails as well. Call it
// deferred, directly. (A function that calls runtime.Goexit still ends
// the goroutine: rules and handshakes must return.)
func recoverRule(rule string, err *error, returned *bool) {
	v := recover()
	if !*returned {
		*err = &PanicError{Rule: rule, Value: v, Stack: debug.Stack()}
	}
}
