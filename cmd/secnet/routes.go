package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/secnet/secnet"
)

// httpRoute is one [[route]] of a policy: the requests it covers and who
// may make them.
type httpRoute struct {
	// Name names the route in refusals and logs.
	Name string
	// Match holds patterns in the syntax of http.ServeMux, without a
	// host: "GET /containers/{id}/json", "POST /build", "/".
	Match []string
	// Rules are the identity rules a peer must pass, in addition to the
	// policy's top-level rules; none means any peer that passed those.
	Rules []secnet.Rule
}

// routeSet decides which route covers a request. The patterns of every
// route are registered in one http.ServeMux, so that the most specific
// pattern that matches decides, by the ServeMux's own rules.
type routeSet struct {
	mux    *http.ServeMux
	prefix versionPrefix
	routes []*httpRoute
}

// routeMatch is what the route set's ServeMux holds for each pattern. It
// is an http.Handler only so that it can be registered; it never serves.
type routeMatch struct {
	route   *httpRoute
	pattern string
}

func (*routeMatch) ServeHTTP(http.ResponseWriter, *http.Request) {}

// newRouteSet checks the routes and builds their ServeMux. versionPrefix
// is "" or a prefix such as "/v{version}" that is removed from a request's
// path before it is matched (see versionPrefix).
func newRouteSet(routes []httpRoute, versionPrefix string) (*routeSet, error) {
	if err := checkServeMux(); err != nil {
		return nil, err
	}
	vp, err := parseVersionPrefix(versionPrefix)
	if err != nil {
		return nil, err
	}
	s := &routeSet{mux: http.NewServeMux(), prefix: vp}
	names := make(map[string]bool)
	var registered []*routeMatch
	for i := range routes {
		r := &routes[i]
		if r.Name == "" {
			return nil, fmt.Errorf("route %d has no name", i+1)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("two routes are named %q", r.Name)
		}
		names[r.Name] = true
		if len(r.Match) == 0 {
			return nil, fmt.Errorf("route %q matches nothing: give match = [\"METHOD /path\", ...]", r.Name)
		}
		for _, pat := range r.Match {
			if err := checkPattern(pat); err != nil {
				return nil, fmt.Errorf("route %q: pattern %q: %w", r.Name, pat, err)
			}
			m := &routeMatch{route: r, pattern: pat}
			if err := register(s.mux, m); err != nil {
				return nil, conflictError(m, registered, err)
			}
			registered = append(registered, m)
		}
		s.routes = append(s.routes, r)
	}
	return s, nil
}

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

// refusal is why a request is refused before any route decides.
type refusal string

// matchPath returns the path of r that routes are matched against: the
// decoded path less the version prefix. It refuses what the upstream
// could read otherwise than the ServeMux does: a target that is not a
// path, a path that is not clean (., .., // segments), an encoded slash,
// control characters, and CONNECT.
func (s *routeSet) matchPath(r *http.Request) (string, refusal) {
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
	return s.prefix.strip(p), ""
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

// decide returns the pattern and route that cover r, or nil and why none
// does.
func (s *routeSet) decide(r *http.Request) (*routeMatch, refusal) {
	p, why := s.matchPath(r)
	if why != "" {
		return nil, why
	}
	h, _ := s.mux.Handler(&http.Request{Method: r.Method, URL: &url.URL{Path: p}})
	m, ok := h.(*routeMatch)
	if !ok {
		return nil, refusal(fmt.Sprintf("no route matches %s %q", r.Method, p))
	}
	return m, ""
}
