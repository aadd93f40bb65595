package secnet

import (
	"sync/atomic"
	"testing"
	"time"
)

// countingCache returns a cache with a short lifetime whose lookups (real
// os/user lookups) are counted.
func countingCache(ttl time.Duration) (*nameCache, *atomic.Int32) {
	c := newNameCache(ttl)
	var n atomic.Int32
	real := c.lookup
	c.lookup = func(k nameKey) nameEntry {
		n.Add(1)
		return real(k)
	}
	return c, &n
}

func TestNameCacheLooksUpOncePerLifetime(t *testing.T) {
	c, lookups := countingCache(time.Second)
	for range 100 {
		if uid, err := c.uid("root"); err != nil || uid != 0 {
			t.Fatalf("uid(root) = %d, %v", uid, err)
		}
	}
	if n := lookups.Load(); n != 1 {
		t.Fatalf("100 checks made %d lookups, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond) // the entry has expired: changes to users are seen
	c.uid("root")
	if n := lookups.Load(); n != 2 {
		t.Fatalf("after the lifetime: %d lookups, want 2", n)
	}
}

func TestNameCacheRemembersUnknownNames(t *testing.T) {
	c, lookups := countingCache(time.Minute)
	for range 10 {
		if _, err := c.uid("no-such-user-sn"); !isUnknownName(err) {
			t.Fatalf("uid(no-such-user-sn): %v, want an unknown-user error", err)
		}
	}
	if n := lookups.Load(); n != 1 {
		t.Fatalf("10 checks of an unknown user made %d lookups, want 1", n)
	}
	if name, err := c.groupName(0); err != nil || name != "root" {
		t.Fatalf("groupName(0) = %q, %v", name, err)
	}
}

// TestUserRuleUsesTheCache checks that a User rule, once warm, asks
// nothing of the user database per connection.
func TestUserRuleUsesTheCache(t *testing.T) {
	c, lookups := countingCache(time.Minute)
	old := lookupCache
	lookupCache = c
	defer func() { lookupCache = old }()
	h := listen(t, User("root", "daemon"))
	h.start()
	for i := range 20 {
		startClient(t, peerBinary(t), h.path, "talk", nil)
		if c, rej := h.next(t); rej != nil && i == 0 {
			t.Logf("rejected (not running as root or daemon): %v", rej)
		} else if c != nil {
			c.Close()
		}
	}
	// root matches at once; daemon is looked up only for other peers.
	if n := lookups.Load(); n > 2 {
		t.Fatalf("20 connections made %d user lookups, want at most 2", n)
	}
}
