package secnetgrpc

import (
	"context"
	"fmt"
	"strings"

	"github.com/secnet/secnet"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MethodRules maps gRPC methods to the rules their callers must pass, on
// top of the rules of the credentials. A key is a full method name
// ("/myd.v1.Jobs/Restart"), a whole service ("/myd.v1.Jobs/*") or "*",
// which applies to every method that no other key names. The most
// specific key wins; a method that no key matches is allowed. Add a "*"
// key to refuse by default:
//
//	secnetgrpc.MethodRules{
//		"*":                 {secnet.UID(0)},     // everything else: root only
//		"/myd.v1.Jobs/List": {secnet.Anyone()},   // any local process may list
//	}
type MethodRules map[string][]secnet.Rule

// methodPolicy is MethodRules checked once, when an interceptor is made.
type methodPolicy map[string]methodRules

type methodRules struct {
	rules []secnet.Rule
	err   error // the rules are invalid: every call is refused
}

func compile(m MethodRules) methodPolicy {
	p := make(methodPolicy, len(m))
	for method, rules := range m {
		mr := methodRules{rules: append([]secnet.Rule(nil), rules...)}
		if len(rules) == 0 {
			mr.err = fmt.Errorf("secnet: no rules given for %s (use secnet.Anyone() to allow every caller explicitly)", method)
		}
		for _, r := range rules {
			if err := r.Err(); err != nil {
				mr.err = fmt.Errorf("secnet: rules for %s: %w", method, err)
				break
			}
		}
		p[method] = mr
	}
	return p
}

// lookup returns the rules for fullMethod ("/pkg.Service/Method").
func (p methodPolicy) lookup(fullMethod string) (methodRules, bool) {
	if mr, ok := p[fullMethod]; ok {
		return mr, true
	}
	if i := strings.LastIndexByte(fullMethod, '/'); i > 0 {
		if mr, ok := p[fullMethod[:i+1]+"*"]; ok {
			return mr, true
		}
	}
	mr, ok := p["*"]
	return mr, ok
}

// authorize returns nil when the caller of ctx may call fullMethod, else
// a status error: Unauthenticated when the caller's identity is unknown
// (the server does not use NewCredentials), PermissionDenied naming every
// failed rule, or Internal when the rules are invalid.
func (p methodPolicy) authorize(ctx context.Context, fullMethod string) error {
	mr, ok := p.lookup(fullMethod)
	if !ok {
		return nil
	}
	if mr.err != nil {
		return status.Error(codes.Internal, mr.err.Error())
	}
	peer, ok := PeerFromContext(ctx)
	if !ok {
		return status.Errorf(codes.Unauthenticated,
			"secnet: the caller's identity is unknown (serve with grpc.Creds(secnetgrpc.NewCredentials(...))): %s", fullMethod)
	}
	var failed []secnet.RuleError
	for _, r := range mr.rules {
		if err := r.Check(&peer); err != nil {
			failed = append(failed, secnet.RuleError{Rule: r.Name(), Err: err})
		}
	}
	if failed != nil {
		rej := &secnet.RejectError{Peer: peer, Failures: failed}
		return status.Errorf(codes.PermissionDenied, "%s: %v", fullMethod, rej)
	}
	return nil
}

// UnaryServerInterceptor returns an interceptor (for grpc.UnaryInterceptor
// or grpc.ChainUnaryInterceptor) that refuses calls whose caller fails the
// rules of the method in m, with codes.PermissionDenied and a message that
// names every failed rule. m is copied.
func UnaryServerInterceptor(m MethodRules) grpc.UnaryServerInterceptor {
	p := compile(m)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := p.authorize(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming
// methods (grpc.StreamInterceptor or grpc.ChainStreamInterceptor).
func StreamServerInterceptor(m MethodRules) grpc.StreamServerInterceptor {
	p := compile(m)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := p.authorize(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}
