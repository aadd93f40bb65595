package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/secnet/secnet"
)

// upstreamRules returns the rules the server of the upstream socket must
// pass, and their description: it runs as one of users (a comma-separated
// list of names and ids) or, when users is empty, as root or as the
// proxy's own user. Without them, anyone who can create a socket at the
// upstream path while the real server is down receives what verified
// clients send.
func upstreamRules(users string) (secnet.Rule, error) {
	if users == "" {
		ids := []int{0}
		if uid := os.Geteuid(); uid != 0 {
			ids = append(ids, uid)
		}
		return secnet.UID(ids...), nil
	}
	var ids []int
	var names []string
	for _, u := range strings.Split(users, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if id, err := strconv.Atoi(u); err == nil && id >= 0 {
			ids = append(ids, id)
			continue
		}
		if err := checkOwner("--upstream-user", u, false); err != nil {
			return secnet.Rule{}, err
		}
		names = append(names, u)
	}
	var alts []secnet.Rule
	if len(ids) > 0 {
		alts = append(alts, secnet.UID(ids...))
	}
	if len(names) > 0 {
		alts = append(alts, secnet.User(names...))
	}
	switch len(alts) {
	case 0:
		return secnet.Rule{}, errors.New("--upstream-user: no user given")
	case 1:
		return alts[0], alts[0].Err()
	}
	r := secnet.AnyOf(alts...)
	return r, r.Err()
}

// warnUpstream logs what an operator should know about the upstream
// socket file at start: that it does not exist yet, or that users other
// than its owner can connect to it directly, going around the policy.
func warnUpstream(log *slog.Logger, path string) {
	if strings.HasPrefix(path, "@") {
		log.Warn("the upstream is an abstract socket: any process in this network namespace can connect to it directly, going around the policy", "upstream", path)
		return
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		log.Warn("the upstream socket does not exist yet: connections are closed until it does", "upstream", path)
		return
	case err != nil:
		log.Warn("cannot check the upstream socket", "upstream", path, "err", err)
		return
	case st.Mode().Type() != fs.ModeSocket:
		log.Warn("the upstream is not a socket (yet)", "upstream", path, "type", st.Mode().Type().String())
		return
	}
	if who := reachableBy(path, st); who != "" {
		log.Warn("the upstream socket is reachable by other users: they can connect to it directly, going around the policy; make it reachable by the proxy's user alone (mode 0600, or a directory of mode 0700)",
			"upstream", path, "reachable_by", who, "mode", fmt.Sprintf("%04o", st.Mode().Perm()))
	}
}

// reachableBy says who besides the socket file's owner can connect to it:
// connecting needs write permission on the file and search permission on
// every directory above it. It returns "" when only the owner (and root)
// can.
func reachableBy(path string, st fs.FileInfo) string {
	perm := st.Mode().Perm()
	gid, _ := fileOwner(st)
	other := perm&0o002 != 0
	group := perm&0o020 != 0
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		ds, err := os.Stat(dir)
		if err != nil {
			return ""
		}
		dperm := ds.Mode().Perm()
		dgid, _ := fileOwner(ds)
		if dperm&0o001 == 0 {
			other = false
			// Members of the socket's group pass a directory of that
			// group that they may search.
			if dgid != gid || dperm&0o010 == 0 {
				group = false
			}
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	switch {
	case other:
		return "every user"
	case group:
		return "members of group " + named(gid, groupName(gid))
	}
	return ""
}
