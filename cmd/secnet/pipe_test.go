package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestPipe copies a stream through pipe, with splice and with buffers, in
// this process: a client writes, half-closes, and reads the echo to its
// end.
func TestPipe(t *testing.T) {
	for _, useSplice := range []bool{true, false} {
		t.Run(map[bool]string{true: "splice", false: "buffers"}[useSplice], func(t *testing.T) {
			_, up := echoUpstream(t)
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(sockDir(t), "s"), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			client := dial(t, ln.Addr().String())
			a, err := ln.AcceptUnix()
			if err != nil {
				t.Fatal(err)
			}
			b := dial(t, up)
			type counts struct{ aToB, bToA int64 }
			done := make(chan counts, 1)
			go func() {
				aToB, bToA, err := pipe(a, b, pipeOptions{noSplice: !useSplice})
				if err != nil {
					t.Errorf("pipe: %v", err)
				}
				a.Close()
				b.Close()
				done <- counts{aToB, bToA}
			}()
			data := make([]byte, 3<<20+17)
			rand.Read(data)
			client.SetDeadline(time.Now().Add(20 * time.Second))
			go func() {
				client.Write(data)
				client.CloseWrite()
			}()
			got, err := io.ReadAll(client)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("echo through pipe: %d bytes, %v; want the %d sent", len(got), err, len(data))
			}
			if c := <-done; c.aToB != int64(len(data)) || c.bToA != int64(len(data)) {
				t.Errorf("pipe counted %+v, want %d each way", c, len(data))
			}
		})
	}
}
