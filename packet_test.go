package secnet_test

import (
	"context"
	"fmt"
	"log"

	"github.com/secnet/secnet"
)

// A datagram socket that delivers only what root's processes send, with
// the sender of each datagram.
func ExampleListenPacket() {
	lc := secnet.ListenConfig{
		Mode:     0666,
		Rejected: func(e *secnet.RejectError) { log.Print(e) },
	}
	pc, err := lc.ListenPacket(context.Background(), "unixgram", "/run/myd/log.sock", secnet.UID(0))
	if err != nil {
		log.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 64<<10)
	for {
		n, _, peer, err := pc.ReadFromPeer(buf)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("pid %d (%s): %q\n", peer.PID, peer.Program, buf[:n])
	}
}
