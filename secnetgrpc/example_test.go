package secnetgrpc_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/secnetgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// whoami is a health service whose Check tells the client who it is.
type whoami struct {
	grpc_health_v1.UnimplementedHealthServer
}

func (whoami) Check(ctx context.Context, _ *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	p, ok := secnetgrpc.PeerFromContext(ctx)
	if ok && p.PID == os.Getpid() {
		return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
	}
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_NOT_SERVING}, nil
}

// A gRPC server and client over a Unix socket, each verifying the other:
// the server accepts clients of its own user, the client talks only to a
// server of its own user; List is for root only.
func Example() {
	dir, err := os.MkdirTemp("", "sn")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "grpc.sock")

	// Server.
	ln, err := secnet.Listen("unix", sock, secnet.SameUser())
	if err != nil {
		log.Fatal(err)
	}
	policy := secnetgrpc.MethodRules{"/grpc.health.v1.Health/List": {secnet.UID(0)}}
	srv := grpc.NewServer(
		grpc.Creds(secnetgrpc.NewCredentials(secnet.Anyone())), // the listener checked SameUser
		grpc.UnaryInterceptor(secnetgrpc.UnaryServerInterceptor(policy)),
		grpc.StreamInterceptor(secnetgrpc.StreamServerInterceptor(policy)),
	)
	grpc_health_v1.RegisterHealthServer(srv, whoami{})
	go srv.Serve(ln)
	defer srv.Stop()

	// Client.
	cc, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(secnetgrpc.NewCredentials(secnet.SameUser())))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	var p peer.Peer
	resp, err := grpc_health_v1.NewHealthClient(cc).Check(context.Background(),
		&grpc_health_v1.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		log.Fatal(err)
	}
	server, _ := secnetgrpc.PeerOf(p.AuthInfo)
	fmt.Println(resp.Status, server.PID == os.Getpid())
	// Output: SERVING true
}

// A client that reaches the socket through a secnet.Dialer, so that it
// can set a timeout and fits where a dial function is expected.
func Example_dialer() {
	d := &secnet.Dialer{Rules: []secnet.Rule{secnet.UID(0)}}
	cc, err := grpc.NewClient("passthrough:///myd",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", "/run/myd.sock")
		}),
		grpc.WithTransportCredentials(secnetgrpc.NewCredentials(secnet.Program("/usr/sbin/myd"))),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
}
