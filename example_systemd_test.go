package secnet_test

import (
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/secnet/secnet"
)

// activatedListeners returns the listening sockets systemd passed, by
// their FileDescriptorName= (LISTEN_FDNAMES): file descriptors 3 to
// 3+LISTEN_FDS-1, meant for this process when LISTEN_PID is its pid. The
// variables are unset, so that no child process takes the sockets for
// its own. The standard library is enough; a command may as well use
// github.com/coreos/go-systemd/v22/activation, as secnet proxy does.
func activatedListeners() map[string]net.Listener {
	defer os.Unsetenv("LISTEN_PID")
	defer os.Unsetenv("LISTEN_FDS")
	defer os.Unsetenv("LISTEN_FDNAMES")
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil
	}
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	out := map[string]net.Listener{}
	for i := range n {
		name := "LISTEN_FD_" + strconv.Itoa(3+i)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		f := os.NewFile(uintptr(3+i), name) // SD_LISTEN_FDS_START is 3
		l, err := net.FileListener(f)       // a copy of the descriptor
		f.Close()
		if err != nil {
			log.Fatalf("socket %q from systemd: %v", name, err)
		}
		out[name] = l
	}
	return out
}

// A socket-activated service: systemd creates the socket (with the mode
// and owner of its .socket unit: SocketMode=, SocketGroup=) and passes it
// to the service. NewListener verifies the peers of that listener exactly
// as Listen does its own; closing it leaves the socket file to systemd.
func ExampleNewListener_systemd() {
	lns := activatedListeners()
	inner, ok := lns["api"] // FileDescriptorName=api in the .socket unit
	if !ok {
		log.Fatal("not started by systemd socket activation with a socket named api")
	}
	ln := secnet.NewListener(inner, secnet.UID(0), secnet.Program("/usr/bin/myctl"))
	ln.SetRejected(func(e *secnet.RejectError) { log.Print(e) })
	srv := &http.Server{Handler: http.DefaultServeMux, ConnContext: secnet.ConnContext}
	log.Fatal(srv.Serve(ln))
}
