package secnetgrpc_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/secnetgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// A server that requires a shared secret of its clients, and a client
// that answers it with NewClientCredentials.
func ExampleNewClientCredentials() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "grpc.sock")
	key := make([]byte, 32) // in real use: secnet.ReadSecretFile
	rand.Read(key)

	ln, err := secnet.Listen("unix", sock, secnet.SameUser(), secnet.SharedSecret(key))
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(secnetgrpc.NewCredentials(secnet.Anyone())))
	grpc_health_v1.RegisterHealthServer(srv, whoami{})
	go srv.Serve(ln)
	defer srv.Stop()

	d := &secnet.Dialer{Rules: []secnet.Rule{secnet.SameUser()}, Handshake: secnet.ProveSharedSecret(key)}
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(secnetgrpc.NewClientCredentials(d)))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	resp, err := grpc_health_v1.NewHealthClient(cc).Check(context.Background(), &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status)
	// Output: SERVING
}
