package secnetgrpc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secnet/secnet"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// The test binary doubles as a gRPC server run as another user: with
// SECNET_GRPC_ROLE=server it serves on SECNET_GRPC_SOCK until its stdin
// closes.
func TestMain(m *testing.M) {
	if os.Getenv("SECNET_GRPC_ROLE") == "server" {
		os.Exit(runServer(os.Getenv("SECNET_GRPC_SOCK")))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runServer serves healthServer on sock, to any local client, and prints
// "ready".
func runServer(sock string) int {
	lc := secnet.ListenConfig{Mode: 0666}
	ln, err := lc.Listen(context.Background(), "unix", sock, secnet.Anyone())
	if err != nil {
		fmt.Println("listen:", err)
		return 2
	}
	srv := grpc.NewServer(grpc.Creds(NewCredentials(secnet.Anyone())))
	grpc_health_v1.RegisterHealthServer(srv, healthServer{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		srv.Stop()
	}()
	fmt.Println("ready")
	if err := srv.Serve(ln); err != nil {
		fmt.Println("serve:", err)
		return 2
	}
	return 0
}

// healthServer answers every method with SERVING, and tells the client
// who it is in the response header: peer-pid, peer-uid, peer-program.
type healthServer struct {
	grpc_health_v1.UnimplementedHealthServer
}

func peerHeader(ctx context.Context) metadata.MD {
	p, ok := PeerFromContext(ctx)
	if !ok {
		return metadata.Pairs("peer-pid", "unknown")
	}
	return metadata.Pairs("peer-pid", strconv.Itoa(p.PID), "peer-uid", strconv.Itoa(p.UID), "peer-program", p.Program)
}

func (healthServer) Check(ctx context.Context, _ *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	grpc.SetHeader(ctx, peerHeader(ctx))
	return &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}, nil
}

func (healthServer) List(ctx context.Context, _ *grpc_health_v1.HealthListRequest) (*grpc_health_v1.HealthListResponse, error) {
	return &grpc_health_v1.HealthListResponse{}, nil
}

func (healthServer) Watch(_ *grpc_health_v1.HealthCheckRequest, ss grpc.ServerStreamingServer[grpc_health_v1.HealthCheckResponse]) error {
	if err := ss.SendHeader(peerHeader(ss.Context())); err != nil {
		return err
	}
	return ss.Send(&grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING})
}

// serve serves healthServer on ln with the server options, until the test
// ends.
func serve(t *testing.T, ln net.Listener, opts ...grpc.ServerOption) {
	t.Helper()
	srv := grpc.NewServer(opts...)
	grpc_health_v1.RegisterHealthServer(srv, healthServer{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// dial returns a health client of the server on sock.
func dial(t *testing.T, sock string, opts ...grpc.DialOption) grpc_health_v1.HealthClient {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cc, err := grpc.NewClient("unix://"+sock, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return grpc_health_v1.NewHealthClient(cc)
}

// callCtx is the context of one RPC in a test.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sockDir returns a short directory that every user can enter.
func sockDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sng")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// peerBinary returns a copy of the test binary that every user can run.
func peerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "sngbin")
		if binErr != nil {
			return
		}
		os.Chmod(binDir, 0755)
		binPath = filepath.Join(binDir, "peer")
		var self string
		if self, binErr = os.Executable(); binErr != nil {
			return
		}
		var data []byte
		if data, binErr = os.ReadFile(self); binErr != nil {
			return
		}
		binErr = os.WriteFile(binPath, data, 0755)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// startServer runs the test binary as a gRPC server on sock with the
// credentials cred, and waits until it is ready. The server stops when
// the test ends.
func startServer(t *testing.T, sock string, cred *syscall.Credential) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(peerBinary(t))
	cmd.Env = append(os.Environ(), "SECNET_GRPC_ROLE=server", "SECNET_GRPC_SOCK="+sock,
		"GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a server as %+v: %v", cred, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line)
		io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		if line != "ready" {
			t.Fatalf("server said %q", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server not ready after 20s")
	}
	return cmd
}
