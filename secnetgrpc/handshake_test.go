package secnetgrpc

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secnet/secnet"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// A server that requires a shared secret, in its credentials or in its
// secnet listener, and clients that answer it with NewClientCredentials:
// with the key an RPC goes through, with another key it fails without
// reaching a handler.
func TestSharedSecret(t *testing.T) {
	key := newKey(t)
	for _, where := range []string{"credentials", "listener"} {
		t.Run(where, func(t *testing.T) {
			sock := filepath.Join(sockDir(t), "g")
			var ln net.Listener
			var err error
			creds := NewCredentials(secnet.Anyone(), secnet.SharedSecret(key))
			if where == "listener" {
				ln, err = secnet.Listen("unix", sock, secnet.SameUser(), secnet.SharedSecret(key))
				creds = NewCredentials(secnet.Anyone())
			} else {
				ln, err = net.Listen("unix", sock)
			}
			if err != nil {
				t.Fatal(err)
			}
			serve(t, ln, grpc.Creds(creds))

			good := &secnet.Dialer{Rules: []secnet.Rule{secnet.SameUser()}, Handshake: secnet.ProveSharedSecret(key)}
			c := dial(t, sock, grpc.WithTransportCredentials(NewClientCredentials(good)))
			md, server, err := checkPeer(t, c)
			if err != nil {
				t.Fatalf("Check with the key: %v", err)
			}
			if server.PID != os.Getpid() || len(md.Get("peer-pid")) != 1 {
				t.Errorf("server %v, handler saw %v", &server, md)
			}

			bad := &secnet.Dialer{Rules: []secnet.Rule{secnet.SameUser()}, Handshake: secnet.ProveSharedSecret(newKey(t))}
			c = dial(t, sock, grpc.WithTransportCredentials(NewClientCredentials(bad)))
			_, _, err = checkPeer(t, c)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "refused the handshake") {
				t.Errorf("Check with another key: %v, want Unavailable saying the handshake was refused", err)
			}
		})
	}
}

// Client credentials with a handshake rule among the rules, and client
// credentials used on a server, are refused with a reason.
func TestHandshakeMisuse(t *testing.T) {
	key := newKey(t)
	sock := filepath.Join(sockDir(t), "g")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, grpc.Creds(NewCredentials(secnet.Anyone())))
	c := dial(t, sock, grpc.WithTransportCredentials(NewCredentials(secnet.SharedSecret(key))))
	if _, _, err := checkPeer(t, c); err == nil || !strings.Contains(err.Error(), "Dialer.Handshake") {
		t.Errorf("a client with a handshake rule: %v", err)
	}

	sock2 := filepath.Join(sockDir(t), "g")
	ln2, err := net.Listen("unix", sock2)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln2, grpc.Creds(NewClientCredentials(&secnet.Dialer{Rules: []secnet.Rule{secnet.Anyone()}})))
	c = dial(t, sock2, grpc.WithTransportCredentials(NewCredentials(secnet.Anyone())))
	if _, _, err := checkPeer(t, c); status.Code(err) != codes.Unavailable {
		t.Errorf("a server with client credentials: %v, want Unavailable", err)
	}
}
