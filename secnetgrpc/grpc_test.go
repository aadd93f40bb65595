package secnetgrpc

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/secnet/secnet"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func executable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// checkPeer calls Check and returns what the server said about the
// client, and what the client knows of the server.
func checkPeer(t *testing.T, c grpc_health_v1.HealthClient) (metadata.MD, secnet.Peer, error) {
	t.Helper()
	var md metadata.MD
	var p peer.Peer
	_, err := c.Check(callCtx(t), &grpc_health_v1.HealthCheckRequest{}, grpc.Header(&md), grpc.Peer(&p))
	if err != nil {
		return nil, secnet.Peer{}, err
	}
	server, ok := PeerOf(p.AuthInfo)
	if !ok {
		t.Errorf("the client's AuthInfo is %T, not a secnet AuthInfo", p.AuthInfo)
	}
	return md, server, nil
}

// TestServerAndClientSeePeers runs a grpc-go server and client over a
// Unix socket with NewCredentials on both sides, served on a secnet
// listener and on a plain one: the handler sees the client process, and
// the client sees the server process.
func TestServerAndClientSeePeers(t *testing.T) {
	exe := executable(t)
	me := []secnet.Rule{secnet.UID(os.Getuid()), secnet.Program(exe)}
	for _, kind := range []string{"secnet listener", "net listener"} {
		t.Run(kind, func(t *testing.T) {
			sock := filepath.Join(sockDir(t), "g")
			var ln net.Listener
			var err error
			if kind == "secnet listener" {
				ln, err = secnet.Listen("unix", sock, secnet.Anyone())
			} else {
				ln, err = net.Listen("unix", sock)
			}
			if err != nil {
				t.Fatal(err)
			}
			serve(t, ln, grpc.Creds(NewCredentials(me...)))
			c := dial(t, sock, grpc.WithTransportCredentials(NewCredentials(me...)))
			md, server, err := checkPeer(t, c)
			if err != nil {
				t.Fatal(err)
			}
			pid := strconv.Itoa(os.Getpid())
			if got := md.Get("peer-pid"); len(got) != 1 || got[0] != pid {
				t.Errorf("handler saw pid %v, want %s", got, pid)
			}
			if got := md.Get("peer-program"); len(got) != 1 || got[0] != exe {
				t.Errorf("handler saw program %v, want %s", got, exe)
			}
			if server.PID != os.Getpid() || server.Program != exe {
				t.Errorf("client saw server %v, want pid %d program %s", &server, os.Getpid(), exe)
			}
		})
	}
}

// TestClientThroughDialer dials with a secnet.Dialer given to
// grpc.WithContextDialer: the credentials get a *secnet.SecureConn.
func TestClientThroughDialer(t *testing.T) {
	sock := filepath.Join(sockDir(t), "g")
	ln, err := secnet.Listen("unix", sock, secnet.SameUser())
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, grpc.Creds(NewCredentials(secnet.Anyone())))
	d := &secnet.Dialer{Rules: []secnet.Rule{secnet.SameUser()}}
	c := dial(t, "", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", sock)
	}), grpc.WithTransportCredentials(NewCredentials(secnet.Program(executable(t)))))
	if _, server, err := checkPeer(t, c); err != nil || server.PID != os.Getpid() {
		t.Fatalf("Check through a Dialer: server %v, %v", &server, err)
	}

	// A Dialer whose rules the server fails: the RPC never reaches it.
	bad := &secnet.Dialer{Rules: []secnet.Rule{secnet.UID(os.Getuid() + 4242)}}
	c = dial(t, "", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return bad.DialContext(ctx, "unix", sock)
	}), grpc.WithTransportCredentials(NewCredentials(secnet.Anyone())))
	_, _, err = checkPeer(t, c)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "uid: peer uid") {
		t.Errorf("Check through a Dialer that refuses the server: %v, want Unavailable naming the uid rule", err)
	}
}

// TestServerRefusesClient: the server's credentials refuse this client,
// so the client's RPC fails without reaching a handler.
func TestServerRefusesClient(t *testing.T) {
	sock := filepath.Join(sockDir(t), "g")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, grpc.Creds(NewCredentials(secnet.UID(os.Getuid()+4242))))
	c := dial(t, sock, grpc.WithTransportCredentials(NewCredentials(secnet.Anyone())))
	if _, _, err := checkPeer(t, c); status.Code(err) != codes.Unavailable {
		t.Errorf("Check from a refused client: %v, want Unavailable", err)
	}
}

// TestClientRefusesServerOfAnotherUser runs the server as uid 1, as a
// socket path taken over by another user would be: a client that
// requires root refuses it during the handshake, a client that accepts
// uid 1 talks to it, and the server sees that client as root.
func TestClientRefusesServerOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the server as uid 1")
	}
	dir := filepath.Join(sockDir(t), "d")
	if err := os.Mkdir(dir, 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 1, 1); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	srv := startServer(t, sock, &syscall.Credential{Uid: 1, Gid: 1})

	c := dial(t, sock, grpc.WithTransportCredentials(NewCredentials(secnet.UID(0))))
	_, _, err := checkPeer(t, c)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "uid: peer uid 1 is not 0") {
		t.Errorf("Check of a server run by uid 1, requiring root: %v, want Unavailable naming the uid rule", err)
	}

	c = dial(t, sock, grpc.WithTransportCredentials(NewCredentials(secnet.UID(1), secnet.Program(peerBinary(t)))))
	md, server, err := checkPeer(t, c)
	if err != nil {
		t.Fatalf("Check of a server run by uid 1, requiring uid 1: %v", err)
	}
	if server.UID != 1 || server.PID != srv.Process.Pid {
		t.Errorf("client saw server %v, want uid 1 pid %d", &server, srv.Process.Pid)
	}
	if got := md.Get("peer-uid"); len(got) != 1 || got[0] != "0" {
		t.Errorf("server saw client uid %v, want 0", got)
	}
}

// TestInterceptors applies rules per method to unary and streaming calls.
func TestInterceptors(t *testing.T) {
	me, other := secnet.UID(os.Getuid()), secnet.UID(os.Getuid()+4242)
	check := func(c grpc_health_v1.HealthClient) error {
		_, err := c.Check(callCtx(t), &grpc_health_v1.HealthCheckRequest{})
		return err
	}
	list := func(c grpc_health_v1.HealthClient) error {
		_, err := c.List(callCtx(t), &grpc_health_v1.HealthListRequest{})
		return err
	}
	watch := func(c grpc_health_v1.HealthClient) error {
		s, err := c.Watch(callCtx(t), &grpc_health_v1.HealthCheckRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	const svc = "/grpc.health.v1.Health/"
	for _, tc := range []struct {
		name               string
		rules              MethodRules
		check, list, watch codes.Code
		creds              bool // the server uses NewCredentials
		wantInMessage      string
	}{
		{"unlisted methods pass", MethodRules{svc + "List": {other}}, codes.OK, codes.PermissionDenied, codes.OK, true, "uid: peer uid"},
		{"stream denied", MethodRules{svc + "Watch": {me, other}}, codes.OK, codes.OK, codes.PermissionDenied, true, "/grpc.health.v1.Health/Watch"},
		{"service wildcard", MethodRules{svc + "*": {other}, svc + "Check": {me}}, codes.OK, codes.PermissionDenied, codes.PermissionDenied, true, "uid"},
		{"default refuses", MethodRules{"*": {other}, svc + "List": {secnet.Anyone()}}, codes.PermissionDenied, codes.OK, codes.PermissionDenied, true, "uid"},
		{"program read for the method", MethodRules{"*": {secnet.Program("/bin/sh")}}, codes.PermissionDenied, codes.PermissionDenied, codes.PermissionDenied, true, "program: "},
		{"invalid rules", MethodRules{svc + "Check": {}}, codes.Internal, codes.OK, codes.OK, true, "no rules given"},
		{"no identity", MethodRules{"*": {secnet.Anyone()}}, codes.Unauthenticated, codes.Unauthenticated, codes.Unauthenticated, false, "NewCredentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(sockDir(t), "g")
			ln, err := secnet.Listen("unix", sock, secnet.Anyone())
			if err != nil {
				t.Fatal(err)
			}
			var tcreds credentials.TransportCredentials = insecure.NewCredentials()
			if tc.creds {
				tcreds = NewCredentials(secnet.Anyone())
			}
			serve(t, ln, grpc.Creds(tcreds),
				grpc.UnaryInterceptor(UnaryServerInterceptor(tc.rules)),
				grpc.StreamInterceptor(StreamServerInterceptor(tc.rules)))
			c := dial(t, sock, grpc.WithTransportCredentials(tcreds))
			for _, call := range []struct {
				name string
				do   func(grpc_health_v1.HealthClient) error
				want codes.Code
			}{{"Check", check, tc.check}, {"List", list, tc.list}, {"Watch", watch, tc.watch}} {
				err := call.do(c)
				if got := status.Code(err); got != call.want {
					t.Errorf("%s: %v, want %v", call.name, err, call.want)
				} else if err != nil && !strings.Contains(status.Convert(err).Message(), tc.wantInMessage) {
					t.Errorf("%s: message %q does not contain %q", call.name, status.Convert(err).Message(), tc.wantInMessage)
				}
			}
		})
	}
}

func TestHandshakeRefusesOtherConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _, err = NewCredentials(secnet.Anyone()).ServerHandshake(raw)
	if !errors.Is(err, secnet.ErrRejected) {
		t.Errorf("ServerHandshake of a TCP connection: %v, want a rejection", err)
	}
	if _, err := raw.Write([]byte("x")); err == nil {
		t.Error("the refused connection was not closed")
	}
	if _, _, err := NewCredentials().ClientHandshake(context.Background(), "x", cl); err == nil {
		t.Error("ClientHandshake without rules succeeded")
	}
}
