package secnet

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestVerify(t *testing.T) {
	exe := mustExecutable(t)
	ln, err := net.Listen("unix", filepath.Join(sockDir(t), "v"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	if _, err := Verify(raw, UID(os.Getuid()+4242)); !errors.Is(err, ErrRejected) {
		t.Errorf("Verify with a failing rule: %v, want a rejection", err)
	}
	if _, err := Verify(raw); err == nil {
		t.Error("Verify without rules succeeded")
	}
	if _, err := Verify(tls.Server(raw, &tls.Config{}), Anyone()); !errors.Is(err, ErrRejected) {
		t.Errorf("Verify of a wrapper: %v, want a rejection", err)
	}
	// The failures did not close the connection: it can still be verified.
	sc, err := Verify(raw, UID(os.Getuid()))
	if err != nil {
		t.Fatalf("Verify with a passing rule: %v", err)
	}
	if sc.UnixConn != raw {
		t.Error("Verify did not wrap the connection it was given")
	}
	// A *SecureConn is checked again, reading what the new rules need.
	if sc.id.peer.known&attrProgram != 0 {
		t.Fatal("the program was read although no rule needed it")
	}
	same, err := Verify(sc, Program(exe))
	if err != nil || same != sc {
		t.Fatalf("Verify(SecureConn, Program) = %p, %v, want the same conn", same, err)
	}
	var rej *RejectError
	if _, err := Verify(sc, Program("/bin/sh")); !errors.As(err, &rej) || rej.Failures[0].Rule != "program" {
		t.Errorf("Verify(SecureConn, Program(/bin/sh)): %v, want a rejection naming program", err)
	}
	if _, err := cl.Write([]byte("x")); err != nil {
		t.Errorf("the client's connection was closed: %v", err)
	}
}
