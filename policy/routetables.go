package policy

import "errors"

// routeTable is a [[route]] table, decoded, with what errors about it
// point at.
type routeTable struct {
	route Route
	table table
	match value
}

// Router returns the router of the policy's [[route]] tables, or nil when
// it has none. A policy with routes makes secnet proxy an HTTP proxy that
// decides each request by its route (see docs/docker.md).
func (pol *Policy) Router() *Router { return pol.router }

// decodeRoutes decodes the [[route]] tables. Each has a name, a match
// (one pattern or an array of them) and, optionally, rule keys as in a
// [[rule]] table that a client must pass to use the route.
func decodeRoutes(pol *Policy, v value) error {
	tables, err := v.tables()
	if err != nil {
		return err
	}
	for _, t := range tables {
		rt := routeTable{table: t}
		name, ok := t.m["name"]
		if !ok {
			return t.errorf("a route needs a name = \"...\": it names the route in refusals and in the log")
		}
		if rt.route.Name, ok = name.(string); !ok || rt.route.Name == "" {
			return t.get("name").errorf("want a non-empty string, got %s", typeName(name))
		}
		if _, ok := t.m["match"]; !ok {
			return t.errorf("route %q needs match = [\"METHOD /path\", ...]: the requests it covers", rt.route.Name)
		}
		rt.match = t.get("match")
		switch m := rt.match.v.(type) {
		case string:
			rt.route.Match = []string{m}
		case []any:
			if len(m) == 0 {
				return rt.match.errorf("empty array: give at least one pattern")
			}
			for i, x := range m {
				s, ok := x.(string)
				if !ok {
					return rt.match.item(i).errorf("want a pattern (a string) in the array, got %s", typeName(x))
				}
				rt.route.Match = append(rt.route.Match, s)
			}
		default:
			return rt.match.errorf("want a pattern or an array of them, got %s", typeName(m))
		}
		if len(t.m) > 2 {
			if rt.route.Rules, err = tableRules(t, "name", "match"); err != nil {
				return err
			}
		}
		pol.routeTables = append(pol.routeTables, rt)
	}
	return nil
}

// decodeHTTP decodes the [http] table: options of the HTTP proxy.
func decodeHTTP(pol *Policy, v value) error {
	t, err := v.asTable("a table ([http])")
	if err != nil {
		return err
	}
	for _, k := range t.keys() {
		kv := t.get(k)
		switch k {
		case "version_prefix":
			s, ok := kv.v.(string)
			if !ok {
				return kv.errorf("want a string such as \"/v{version}\", got %s", typeName(kv.v))
			}
			if _, err := parseVersionPrefix(s); err != nil {
				return kv.errorf("%w", err)
			}
			pol.versionPrefix = s
		default:
			return kv.errorf("unknown key (the keys of [http] are: version_prefix)")
		}
	}
	pol.httpTable = &v
	return nil
}

// buildRouter checks the routes together (names, patterns, conflicts
// between them) once every table is decoded.
func (pol *Policy) buildRouter() error {
	if pol.routeTables == nil {
		if pol.httpTable != nil {
			return pol.httpTable.errorf("[http] applies to [[route]] tables, and there are none")
		}
		return nil
	}
	rt, err := newRouter(pol.versionPrefix)
	if err != nil {
		return &Error{Line: 1, Key: "http", Err: err}
	}
	for _, r := range pol.routeTables {
		err := rt.add(r.route, func(i int, err error) error {
			it := r.match.item(i)
			return it.errorf("%w", err)
		})
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			err = r.table.get("name").errorf("%w", err)
		}
		if err != nil {
			return err
		}
	}
	pol.router = rt
	pol.routeTables = nil
	return nil
}
