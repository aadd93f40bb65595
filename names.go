package secnet

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"sync"
	"time"
)

// nameTTL bounds how long a user or group name stays cached, so that a
// user or group added, removed or renamed is seen within that time
// without a lookup (which may ask NSS, LDAP or systemd) per connection.
const nameTTL = 30 * time.Second

// lookupCache is the process-wide cache of user and group names. The cache is
// internal state, not configuration: nothing outside the package sets it.
var lookupCache = newNameCache(nameTTL)

type nameKind uint8

const (
	userByName nameKind = iota
	userByID
	groupByName
	groupByID
)

type nameKey struct {
	kind nameKind
	key  string
}

type nameEntry struct {
	id      int    // for lookups by name
	name    string // for lookups by id
	err     error  // an unknown name or id is cached too
	expires time.Time
}

// nameCache caches os/user lookups for a bounded time. Lookups that fail
// for another reason than an unknown name (NSS down) are not cached.
type nameCache struct {
	ttl    time.Duration
	lookup func(nameKey) nameEntry // asks os/user
	mu     sync.RWMutex
	m      map[nameKey]nameEntry
}

func newNameCache(ttl time.Duration) *nameCache {
	return &nameCache{ttl: ttl, lookup: lookup, m: make(map[nameKey]nameEntry)}
}

func (c *nameCache) get(k nameKey) nameEntry {
	now := time.Now()
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if ok && now.Before(e.expires) {
		return e
	}
	e = c.lookup(k)
	var cacheable bool
	switch e.err.(type) {
	case nil, user.UnknownUserError, user.UnknownUserIdError, user.UnknownGroupError, user.UnknownGroupIdError:
		cacheable = true
	}
	if cacheable {
		e.expires = now.Add(c.ttl)
		c.mu.Lock()
		c.m[k] = e
		c.mu.Unlock()
	}
	return e
}

func lookup(k nameKey) nameEntry {
	switch k.kind {
	case userByName:
		u, err := user.Lookup(k.key)
		if err != nil {
			return nameEntry{err: err}
		}
		return idEntry(u.Uid, "user "+k.key)
	case userByID:
		u, err := user.LookupId(k.key)
		if err != nil {
			return nameEntry{err: err}
		}
		return nameEntry{name: u.Username}
	case groupByName:
		g, err := user.LookupGroup(k.key)
		if err != nil {
			return nameEntry{err: err}
		}
		return idEntry(g.Gid, "group "+k.key)
	default:
		g, err := user.LookupGroupId(k.key)
		if err != nil {
			return nameEntry{err: err}
		}
		return nameEntry{name: g.Name}
	}
}

func idEntry(s, what string) nameEntry {
	id, err := strconv.Atoi(s)
	if err != nil {
		return nameEntry{err: fmt.Errorf("%s has a non-numeric id %q", what, s)}
	}
	return nameEntry{id: id}
}

func (c *nameCache) uid(name string) (int, error) {
	e := c.get(nameKey{userByName, name})
	return e.id, e.err
}

func (c *nameCache) gid(name string) (int, error) {
	e := c.get(nameKey{groupByName, name})
	return e.id, e.err
}

func (c *nameCache) userName(uid int) (string, error) {
	e := c.get(nameKey{userByID, strconv.Itoa(uid)})
	return e.name, e.err
}

func (c *nameCache) groupName(gid int) (string, error) {
	e := c.get(nameKey{groupByID, strconv.Itoa(gid)})
	return e.name, e.err
}

// checkName says why the user or group (what) name cannot be used in a
// rule: it does not exist, or it could not be looked up. User, Group and
// the policy file refuse such names when the rule is built.
func checkName(what, name string) error {
	var err error
	if what == "user" {
		_, err = lookupCache.uid(name)
	} else {
		_, err = lookupCache.gid(name)
	}
	switch {
	case err == nil:
		return nil
	case isUnknownName(err):
		return fmt.Errorf("no %s named %q exists", what, name)
	}
	return fmt.Errorf("looking up %s %q: %w", what, name, err)
}

// isUnknownName reports whether err says that a user or group does not exist.
func isUnknownName(err error) bool {
	var (
		u1 user.UnknownUserError
		u2 user.UnknownGroupError
	)
	return errors.As(err, &u1) || errors.As(err, &u2)
}
