package policy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/secnet/secnet"
)

// Route is a [[route]] table of a policy: the HTTP requests it covers
// and who may make them.
type Route struct {
	// Name names the route in refusals and logs.
	Name string
	// Match holds patterns in the syntax of http.ServeMux, without a
	// host: "GET /containers/{id}/json", "POST /build", "/".
	Match []string
	// Rules are the identity rules a peer must pass, in addition to the
	// policy's [[rule]] tables; none means any peer that passed those.
	Rules []secnet.Rule
}

// Router decides which route covers an HTTP request. The patterns of
// every route are registered in one http.ServeMux, so that the most
// specific pattern that matches decides, by the ServeMux's own rules. A
// Router is immutable and safe for concurrent use.
type Router struct {
	mux        *http.ServeMux
	prefix     versionPrefix
	routes     []*Route
	names      map[string]bool
	registered []*routeMatch
}

// routeMatch is what the Router's ServeMux holds for each pattern. It is
// an http.Handler only so that it can be registered; it never serves.
type routeMatch struct {
	route   *Route
	pattern string
}

func (*routeMatch) ServeHTTP(http.ResponseWriter, *http.Request) {}

// NewRouter checks the routes and builds their Router, as a policy file's
// [[route]] tables and [http] version_prefix are: versionPrefix is "" or
// a prefix such as "/v{version}" that is removed from a request's path
// before it is matched (see docs/docker.md). The routes are copied.
func NewRouter(routes []Route, versionPrefix string) (*Router, error) {
	rt, err := newRouter(versionPrefix)
	if err != nil {
		return nil, err
	}
	for i, r := range routes {
		if r.Name == "" {
			return nil, fmt.Errorf("route %d has no name", i+1)
		}
		if err := rt.add(r, func(_ int, err error) error { return err }); err != nil {
			return nil, err
		}
	}
	return rt, nil
}

func newRouter(versionPrefix string) (*Router, error) {
	if err := checkServeMux(); err != nil {
		return nil, err
	}
	vp, err := parseVersionPrefix(versionPrefix)
	if err != nil {
		return nil, err
	}
	return &Router{mux: http.NewServeMux(), prefix: vp, names: make(map[string]bool)}, nil
}

// add registers the patterns of r; patternErr places an error about
// pattern i of r.Match.
func (rt *Router) add(r Route, patternErr func(i int, err error) error) error {
	if rt.names[r.Name] {
		return fmt.Errorf("two routes are named %q", r.Name)
	}
	rt.names[r.Name] = true
	if len(r.Match) == 0 {
		return fmt.Errorf("route %q matches nothing: give match = [\"METHOD /path\", ...]", r.Name)
	}
	route := &r
	route.Match = slices.Clone(r.Match)
	route.Rules = slices.Clone(r.Rules)
	for i, pat := range route.Match {
		if err := checkPattern(pat); err != nil {
			return patternErr(i, fmt.Errorf("route %q: pattern %q: %w", r.Name, pat, err))
		}
		m := &routeMatch{route: route, pattern: pat}
		if err := register(rt.mux, m); err != nil {
			return patternErr(i, conflictError(m, rt.registered, err))
		}
		rt.registered = append(rt.registered, m)
	}
	rt.routes = append(rt.routes, route)
	return nil
}

// Routes returns the routes, in the order of the file.
func (rt *Router) Routes() []Route {
	out := make([]Route, len(rt.routes))
	for i, r := range rt.routes {
		out[i] = *r
		out[i].Match = slices.Clone(r.Match)
		out[i].Rules = slices.Clone(r.Rules)
	}
	return out
}

// VersionPrefix returns the version prefix removed before matching, or "".
func (rt *Router) VersionPrefix() string { return rt.prefix.String() }

// checkPattern refuses patterns that name a host: the Host header is the
// client's to choose, so it must not choose the route.
func checkPattern(pat string) error {
	p := pat
	if i := strings.IndexAny(p, " \t"); i >= 0 {
		p = strings.TrimLeft(p[i:], " \t")
	}
	if !strings.HasPrefix(p, "/") {
		return errors.New("want [METHOD ]/PATH: a pattern names no host (the Host header is the client's to choose)")
	}
	return nil
}

// register adds m to mux, turning the ServeMux's panic on a bad or
// conflicting pattern into an error.
func register(mux *http.ServeMux, m *routeMatch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(m.pattern, m)
	return nil
}

// conflictError says which earlier pattern m conflicts with, and why, in
// the ServeMux's words; err is the ServeMux's complaint about m.
func conflictError(m *routeMatch, earlier []*routeMatch, err error) error {
	for _, e := range earlier {
		mux := http.NewServeMux()
		mux.Handle(e.pattern, e)
		if cerr := register(mux, m); cerr != nil {
			why := cerr.Error()
			if _, after, ok := strings.Cut(why, ":\n"); ok {
				why = strings.Join(strings.Fields(after), " ")
			}
			return fmt.Errorf("route %q: pattern %q conflicts with pattern %q of route %q: %s",
				m.route.Name, m.pattern, e.pattern, e.route.Name, why)
		}
	}
	return fmt.Errorf("route %q: pattern %q: %v", m.route.Name, m.pattern, err)
}

// checkServeMux makes sure the ServeMux has the pattern syntax of Go 1.22
// and later, with methods and wildcards: GODEBUG=httpmuxgo121=1 would
// make "GET /x" a different pattern altogether.
func checkServeMux() (err error) {
	defer func() {
		if recover() != nil {
			err = errors.New("http.ServeMux does not take method patterns here (is GODEBUG=httpmuxgo121=1 set?): routes cannot be used")
		}
	}()
	mux := http.NewServeMux()
	m := &routeMatch{}
	mux.Handle("GET /a/{x}", m)
	h, _ := mux.Handler(&http.Request{Method: "GET", URL: &url.URL{Path: "/a/b"}})
	h2, _ := mux.Handler(&http.Request{Method: "POST", URL: &url.URL{Path: "/a/b"}})
	if h != m || h2 == m {
		return errors.New("http.ServeMux does not match method patterns here (is GODEBUG=httpmuxgo121=1 set?): routes cannot be used")
	}
	return nil
}

// versionPrefix is an API-version prefix that may start a request's
// path and is removed before the path is matched: "/v{version}" removes
// a leading /v1.41, as Docker's router does, where {version} stands for
// one or more digits and dots. The prefix must be a whole segment (or
// several): /v1.41/containers/json is matched as /containers/json, and
// /v1.41 alone as /. The zero value removes nothing.
type versionPrefix struct {
	before, after string
	set           bool
}

func parseVersionPrefix(s string) (versionPrefix, error) {
	if s == "" {
		return versionPrefix{}, nil
	}
	before, after, ok := strings.Cut(s, "{version}")
	switch {
	case !strings.HasPrefix(s, "/"):
		return versionPrefix{}, fmt.Errorf("version prefix %q does not start with /", s)
	case !ok || strings.Contains(after, "{version}"):
		return versionPrefix{}, fmt.Errorf("version prefix %q must hold {version} once, e.g. \"/v{version}\"", s)
	case strings.ContainsAny(before+after, "{}"):
		return versionPrefix{}, fmt.Errorf("version prefix %q: the only placeholder is {version}", s)
	case strings.HasSuffix(after, "/"):
		return versionPrefix{}, fmt.Errorf("version prefix %q must not end with /", s)
	}
	return versionPrefix{before: before, after: after, set: true}, nil
}

func (vp versionPrefix) String() string {
	if !vp.set {
		return ""
	}
	return vp.before + "{version}" + vp.after
}

// strip removes the prefix from p, a clean path, when p starts with it.
func (vp versionPrefix) strip(p string) string {
	if !vp.set || !strings.HasPrefix(p, vp.before) {
		return p
	}
	rest := p[len(vp.before):]
	n := 0
	for n < len(rest) && (rest[n] == '.' || '0' <= rest[n] && rest[n] <= '9') {
		n++
	}
	if n == 0 || !strings.HasPrefix(rest[n:], vp.after) {
		return p
	}
	rest = rest[n+len(vp.after):]
	switch {
	case rest == "":
		return "/"
	case rest[0] == '/':
		return rest
	}
	return p // the prefix is not a whole segment: /v1.41x/...
}

// matchPath returns the path of r that routes are matched against: the
// decoded path less the version prefix. It refuses what the upstream
// could read otherwise than the ServeMux does: a target that is not a
// path, a path that is not clean (., .., // segments), an encoded slash,
// control characters, and CONNECT.
func (rt *Router) matchPath(r *http.Request) (string, string) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodConnect:
		return "", "CONNECT is not proxied"
	case !strings.HasPrefix(p, "/"):
		return "", "the request target is not a path"
	case strings.Contains(strings.ToLower(r.URL.RawPath), "%2f"):
		return "", "the path holds an encoded slash (%2F)"
	case strings.ContainsFunc(p, func(c rune) bool { return c < 0x20 || c == 0x7f }):
		return "", "the path holds control characters"
	case cleanPath(p) != p:
		return "", "the path is not clean (it holds //, /./ or /../)"
	}
	return rt.prefix.strip(p), ""
}

// cleanPath is path.Clean keeping a trailing slash, as http.ServeMux
// cleans paths.
func cleanPath(p string) string {
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}

// Decide returns the route that covers r and the pattern that matched,
// or a nil route and why none does. Patterns are matched against the
// path of r less the version prefix, and r is refused outright where the
// upstream could read it otherwise than the ServeMux does (see matchPath).
// Decide does not check the route's rules: the caller applies them to
// the client (secnet.Verify).
func (rt *Router) Decide(r *http.Request) (route *Route, pattern, refusal string) {
	p, why := rt.matchPath(r)
	if why != "" {
		return nil, "", why
	}
	h, _ := rt.mux.Handler(&http.Request{Method: r.Method, URL: &url.URL{Path: p}})
	m, ok := h.(*routeMatch)
	if !ok {
		return nil, "", fmt.Sprintf("no route matches %s %q", r.Method, p)
	}
	return m.route, m.pattern, ""
}
