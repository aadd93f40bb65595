package secnet_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/secnet/secnet"
)

// A server that accepts one exact build of its client, by content
// wherever it is installed, and checks before each privileged request
// that the client has not exited or called execve since it connected.
func ExampleSecureConn_Recheck() {
	lc := secnet.ListenConfig{Mode: 0660, KeepPidfd: true}
	ln, err := lc.Listen(context.Background(), "unix", "/run/myd.sock",
		secnet.ProgramDigest("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	for {
		c, err := ln.AcceptSecure()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			// ... read a request; before acting on it:
			switch err := c.Recheck(); {
			case errors.Is(err, secnet.ErrProgramChanged):
				log.Printf("client %d now runs another program: refused", c.Peer().PID)
				return
			case err != nil:
				log.Printf("client cannot be confirmed: %v", err)
				return
			}
			fmt.Fprintln(c, "done")
		}()
	}
}
