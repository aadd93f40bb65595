package secnet_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/secnet/secnet"
)

// A server that requires a shared secret of its clients, on top of a uid
// rule, and clients that answer with the right key and a wrong one.
func ExampleSharedSecret() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "example.sock")

	key := make([]byte, 32) // in real use: read from a file only the client's user can read
	rand.Read(key)

	ln, err := secnet.Listen("unix", sock, secnet.SameUser(), secnet.SharedSecret(key))
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()

	dial := func(key []byte) {
		d := secnet.Dialer{Rules: []secnet.Rule{secnet.SameUser()}, Handshake: secnet.ProveSharedSecret(key)}
		c, err := d.DialContext(context.Background(), "unix", sock)
		if err != nil {
			fmt.Println("refused:", errors.Is(err, secnet.ErrHandshakeRefused))
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		fmt.Println("server says:", string(b))
	}
	dial(key)
	wrong := make([]byte, 32)
	rand.Read(wrong)
	dial(wrong)
	// Output:
	// server says: hello
	// refused: true
}
