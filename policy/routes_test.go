package policy

import (
	"net/http"
	"net/url"
	"os/user"
	"strings"
	"testing"

	"github.com/secnet/secnet"
)

func dockerishRoutes() []Route {
	return []Route{
		{Name: "read", Match: []string{"GET /_ping", "GET /containers/json", "GET /containers/{id}/json", "GET /images/"}, Rules: []secnet.Rule{secnet.Anyone()}},
		{Name: "start", Match: []string{"POST /containers/{id}/start"}},
		{Name: "root", Match: []string{"/"}, Rules: []secnet.Rule{secnet.UID(0)}},
	}
}

func TestRouteDecisions(t *testing.T) {
	rs, err := NewRouter(dockerishRoutes(), "/v{version}")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, target string
		route, pattern string // "" for refused
		refusal        string
	}{
		{"GET", "/_ping", "read", "GET /_ping", ""},
		{"HEAD", "/_ping", "read", "GET /_ping", ""}, // GET patterns match HEAD
		{"GET", "/v1.41/_ping", "read", "GET /_ping", ""},
		{"GET", "/v1.41/containers/json?all=1", "read", "GET /containers/json", ""},
		{"GET", "/v1.41/containers/abc/json", "read", "GET /containers/{id}/json", ""},
		{"POST", "/v1.41/containers/abc/json", "root", "/", ""}, // the method decides
		{"POST", "/v1.41/containers/abc/start", "start", "POST /containers/{id}/start", ""},
		{"POST", "/v1.41/containers/create", "root", "/", ""},
		{"GET", "/images/local/busybox/json", "read", "GET /images/", ""},
		{"GET", "/v1/_ping", "read", "GET /_ping", ""}, // one number is a version too
		{"GET", "/v./_ping", "read", "GET /_ping", ""}, // as Docker's [0-9.]+ reads it
		{"GET", "/v1.41x/_ping", "root", "/", ""},      // not a whole segment
		{"GET", "/vx/_ping", "root", "/", ""},          // not a version
		{"GET", "/v1.41/v1.40/_ping", "root", "/", ""}, // removed once
		{"GET", "/v1.41", "root", "/", ""},             // the version alone is /
		{"GET", "/containers/a%2Fb/json", "", "", "encoded slash"},
		{"GET", "/containers/a%2fb/json", "", "", "encoded slash"},
		{"GET", "/v1.41/containers/x/../create", "", "", "not clean"},
		{"GET", "/v1.41//containers/json", "", "", "not clean"},
		{"GET", "/v1.41/./containers/json", "", "", "not clean"},
		{"GET", "/containers/%2e%2e/json", "", "", "not clean"},
		{"GET", "/containers/x%00/json", "", "", "control characters"},
		{"CONNECT", "/", "", "", "CONNECT"},
		{"GET", "*", "", "", "not a path"},
	} {
		u, err := url.ParseRequestURI(tc.target)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		m, pattern, why := rs.Decide(&http.Request{Method: tc.method, URL: u})
		switch {
		case tc.route == "" && m != nil:
			t.Errorf("%s %s: route %q (%q), want a refusal", tc.method, tc.target, m.Name, pattern)
		case tc.route == "" && !strings.Contains(why, tc.refusal):
			t.Errorf("%s %s: refusal %q, want one that says %q", tc.method, tc.target, why, tc.refusal)
		case tc.route != "" && m == nil:
			t.Errorf("%s %s: refused (%s), want route %q", tc.method, tc.target, why, tc.route)
		case tc.route != "" && (m.Name != tc.route || pattern != tc.pattern):
			t.Errorf("%s %s: route %q pattern %q, want %q %q", tc.method, tc.target, m.Name, pattern, tc.route, tc.pattern)
		}
	}
}

func TestRouteNoMatchIsRefused(t *testing.T) {
	rs, err := NewRouter([]Route{{Name: "ping", Match: []string{"GET /_ping", "GET /images/"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/containers/json", "/v1.41/_ping", "/images", "/_ping/"} {
		u, _ := url.ParseRequestURI(target)
		m, _, why := rs.Decide(&http.Request{Method: "GET", URL: u})
		if m != nil || !strings.Contains(why, "no route matches GET") {
			t.Errorf("GET %s: %v %q, want no route", target, m, why)
		}
	}
	u, _ := url.ParseRequestURI("/_ping")
	if m, _, why := rs.Decide(&http.Request{Method: "POST", URL: u}); m != nil || !strings.Contains(why, `no route matches POST "/_ping"`) {
		t.Errorf("POST /_ping: %v %q, want no route", m, why)
	}
}

func TestRouteSetErrors(t *testing.T) {
	for _, tc := range []struct {
		routes []Route
		prefix string
		want   string
	}{
		{[]Route{{Name: "a", Match: []string{"GET /x"}}, {Name: "b", Match: []string{"GET /x"}}}, "",
			`route "b": pattern "GET /x" conflicts with pattern "GET /x" of route "a"`},
		{[]Route{{Name: "a", Match: []string{"/a/{x}"}}, {Name: "b", Match: []string{"/{y}/b"}}}, "",
			`route "b": pattern "/{y}/b" conflicts with pattern "/a/{x}" of route "a": `},
		{[]Route{{Name: "a", Match: []string{"/c/{id}/json"}, Rules: nil}, {Name: "b", Match: []string{"/c/{name}/json"}}}, "",
			`conflicts with pattern "/c/{id}/json" of route "a"`},
		{[]Route{{Name: "a", Match: []string{"example.com/"}}}, "", `pattern "example.com/": want [METHOD ]/PATH`},
		{[]Route{{Name: "a", Match: []string{"GET example.com/x"}}}, "", "names no host"},
		{[]Route{{Name: "a", Match: []string{"GET /{x"}}}, "", `route "a": pattern "GET /{x"`},
		{[]Route{{Name: "a"}}, "", `route "a" matches nothing`},
		{[]Route{{Name: "a", Match: []string{"/"}}, {Name: "a", Match: []string{"/x"}}}, "", `two routes are named "a"`},
		{[]Route{{Match: []string{"/"}}}, "", "route 1 has no name"},
		{[]Route{{Name: "a", Match: []string{"/"}}}, "v{version}", "does not start with /"},
		{[]Route{{Name: "a", Match: []string{"/"}}}, "/v", "must hold {version} once"},
		{[]Route{{Name: "a", Match: []string{"/"}}}, "/{version}/{version}", "must hold {version} once"},
		{[]Route{{Name: "a", Match: []string{"/"}}}, "/v{version}/", "must not end with /"},
		{[]Route{{Name: "a", Match: []string{"/"}}}, "/{api}/v{version}", "the only placeholder"},
	} {
		_, err := NewRouter(tc.routes, tc.prefix)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %q: error %v, want one that says %q", tc.routes, tc.prefix, err, tc.want)
		}
	}
}

func TestVersionPrefixElsewhere(t *testing.T) {
	vp, err := parseVersionPrefix("/api/v{version}/x")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"/api/v2/x/items":  "/items",
		"/api/v2.1/x":      "/",
		"/api/v2/y/items":  "/api/v2/y/items",
		"/api/v/x/items":   "/api/v/x/items",
		"/api/v2/xy/items": "/api/v2/xy/items",
		"/other":           "/other",
	} {
		if got := vp.strip(in); got != want {
			t.Errorf("strip(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRouteTables(t *testing.T) {
	pol, err := Load("testdata/policies/routes.toml")
	if err != nil {
		t.Fatal(err)
	}
	rt := pol.Router()
	if rt == nil {
		t.Fatal("no router")
	}
	routes := rt.Routes()
	if len(routes) != 3 || routes[0].Name != "health" || len(routes[0].Rules) != 0 ||
		strings.Join(routes[1].Match, ",") != "GET /items/,GET /items/{id}" || len(routes[1].Rules) != 1 ||
		routes[2].Rules[0].String() != "uid(0)" || rt.VersionPrefix() != "/api/v{version}" {
		t.Fatalf("routes = %+v, prefix %q", routes, rt.VersionPrefix())
	}
	for target, want := range map[string]string{
		"GET /api/v2/health":     "health",
		"GET /health":            "health",
		"HEAD /api/v2/items/7":   "read",
		"GET /items/a/b":         "read",
		"POST /api/v2/items/7":   "write",
		"DELETE /api/v2.1/items": "write",
	} {
		method, path, _ := strings.Cut(target, " ")
		u, _ := url.ParseRequestURI(path)
		r, _, why := rt.Decide(&http.Request{Method: method, URL: u})
		if r == nil || r.Name != want {
			t.Errorf("%s: %v %q, want route %q", target, r, why, want)
		}
	}
	if pol, err := Load("testdata/policies/root-only.toml"); err != nil || pol.Router() != nil {
		t.Errorf("a policy without routes: router %v, %v; want none", pol.Router(), err)
	}
}

// TestDockerPolicy loads the shipped Docker policy.
func TestDockerPolicy(t *testing.T) {
	if _, err := user.LookupGroup("docker"); err != nil {
		t.Skipf("no group docker (the docker.io package creates it): %v", err)
	}
	pol, err := Load("../contrib/policies/docker.toml")
	if err != nil {
		t.Fatal(err)
	}
	rt := pol.Router()
	if rt == nil || len(rt.Routes()) != 2 || rt.VersionPrefix() != "/v{version}" {
		t.Fatalf("router %+v", rt)
	}
	for target, want := range map[string]string{
		"HEAD /_ping":                          "look",
		"GET /v1.41/containers/json":           "look",
		"GET /v1.41/containers/c1/logs":        "look",
		"GET /v1.41/images/local/busybox/json": "look",
		"GET /v1.41/containers/c1/archive":     "root",
		"GET /v1.41/images/busybox/get":        "root",
		"POST /v1.41/containers/create":        "root",
		"POST /v1.41/containers/c1/attach":     "root",
		"POST /v1.41/exec/e1/start":            "root",
		"POST /v1.41/build":                    "root",
		"DELETE /v1.41/containers/c1":          "root",
		"PUT /v1.41/containers/c1/archive":     "root",
	} {
		method, path, _ := strings.Cut(target, " ")
		u, _ := url.ParseRequestURI(path)
		if r, _, why := rt.Decide(&http.Request{Method: method, URL: u}); r == nil || r.Name != want {
			t.Errorf("%s: %v %q, want route %q", target, r, why, want)
		}
	}
}

// BenchmarkRouterDecide decides a request of the Docker API against a
// router of the size of contrib/policies/docker.toml.
func BenchmarkRouterDecide(b *testing.B) {
	var match []string
	for _, p := range []string{"_ping", "version", "info", "events", "containers/json", "images/json", "networks", "volumes"} {
		match = append(match, "GET /"+p)
	}
	for _, p := range []string{"json", "logs", "top", "stats"} {
		match = append(match, "GET /containers/{id}/"+p)
	}
	rt, err := NewRouter([]Route{{Name: "look", Match: match}, {Name: "root", Match: []string{"/"}}}, "/v{version}")
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.ParseRequestURI("/v1.41/containers/0123456789ab/logs")
	r := &http.Request{Method: "GET", URL: u}
	b.ReportAllocs()
	for b.Loop() {
		if route, _, _ := rt.Decide(r); route == nil || route.Name != "look" {
			b.Fatal("wrong route")
		}
	}
}
