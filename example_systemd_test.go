package secnet_test

import (
	"log"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/secnet/secnet"
)

// A socket-activated service: systemd creates the socket (with the mode
// and owner of its .socket unit) and passes it as fd 3 with LISTEN_FDS=1
// and LISTEN_PID set to the service's pid. NewListener verifies the peers
// of that listener; nothing beyond the standard library is needed.
func ExampleNewListener_systemd() {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") != "1" {
		log.Fatal("not started by systemd socket activation")
	}
	f := os.NewFile(3, "socket") // SD_LISTEN_FDS_START
	inner, err := net.FileListener(f)
	f.Close() // FileListener made its own copy
	if err != nil {
		log.Fatal(err)
	}
	ln := secnet.NewListener(inner, secnet.UID(0), secnet.Program("/usr/bin/myctl"))
	ln.SetRejected(func(e *secnet.RejectError) { log.Print(e) })
	srv := &http.Server{Handler: http.DefaultServeMux, ConnContext: secnet.ConnContext}
	log.Fatal(srv.Serve(ln))
}
