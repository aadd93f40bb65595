package secnet

import (
	"container/list"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// ProgramDigest passes a peer whose executable file has one of the given
// SHA-256 digests. Each digest is 64 hexadecimal digits, in either case,
// optionally prefixed with "sha256:"; anything else makes the rule invalid
// (see Rule.Err).
//
// ProgramDigest checks content, where Program checks file identity: a
// copy of an allowed program at another path passes ProgramDigest and
// fails Program, and a program upgraded in place passes Program and fails
// ProgramDigest until its new digest is allowed.
//
// The file is the one behind /proc/<pid>/exe, opened through the pidfd
// that pins the process that connected (as Program reads it), so it is
// the file the peer was running when the listener accepted the
// connection; Peer.ProgramSHA256 holds its digest. A file is hashed once:
// the digest is cached by device, inode, size, modification and change
// time, taken from the statx that Program's reading makes anyway, so an
// unchanged executable costs nothing more than Program per connection,
// and a changed or replaced one is hashed again. A file
// larger than 1 GiB is not hashed and fails the rule.
//
// Like Program, ProgramDigest fails a peer whose executable was deleted or
// replaced on disk after it started, whose pid is not visible, that has
// exited, or whose /proc entry cannot be read. The listener also needs
// read permission on the file, which an execute-only program (mode 0711)
// does not give a listener that is not root.
//
// A digest proves what the file holds, not what the process runs: an
// interpreter's digest says nothing about its script, and the process may
// load other code (shared libraries, LD_PRELOAD, plugins) or call execve
// later (see (*SecureConn).Recheck).
func ProgramDigest(digests ...string) Rule {
	if len(digests) == 0 {
		return invalid("programdigest", errors.New("no SHA-256 digests given"))
	}
	want := make([]exeDigest, len(digests))
	hexes := make([]string, len(digests))
	for i, s := range digests {
		d, err := parseDigest(s)
		if err != nil {
			return invalid("programdigest", err)
		}
		want[i], hexes[i] = d, d.hex()
	}
	desc := "programdigest(sha256:" + strings.Join(hexes, ", sha256:") + ")"
	return leaf("programdigest", desc, attrCred|attrProgram|attrDigest, func(p *Peer) error {
		for _, h := range hexes {
			if h == p.ProgramSHA256 {
				return nil
			}
		}
		return fmt.Errorf("peer program %q has sha256 %s, which is not %s", p.Program, p.ProgramSHA256, orList(hexes))
	})
}

// ProgramSHA256 returns Peer.ProgramSHA256, the SHA-256 digest of the
// peer's executable in lowercase hex, reading it through the pidfd (and
// hashing the file unless its digest is cached) if no rule needed it, or
// the reason it cannot be read.
func (c *SecureConn) ProgramSHA256() (string, error) {
	p := c.id.load(attrProgram | attrDigest)
	if err := p.need(attrProgram | attrDigest); err != nil {
		return "", err
	}
	return p.ProgramSHA256, nil
}

// exeDigest is a SHA-256 digest.
type exeDigest [32]byte

func (d exeDigest) hex() string { return hex.EncodeToString(d[:]) }

// parseDigest reads a SHA-256 digest written as 64 hex digits, with an
// optional "sha256:" prefix.
func parseDigest(s string) (exeDigest, error) {
	var d exeDigest
	h := strings.TrimPrefix(s, "sha256:")
	if len(h) != 2*len(d) {
		return d, fmt.Errorf("%q is not a SHA-256 digest: want 64 hexadecimal digits, got %d characters", s, len(h))
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, fmt.Errorf("%q is not a SHA-256 digest: %w", s, err)
	}
	return d, nil
}

// maxDigestSize bounds the size of a file ProgramDigest hashes, so that a
// peer cannot make the listener read a huge (or sparse) file.
const maxDigestSize = 1 << 30

// digestKey identifies the content of a file without reading it: any
// write changes the modification time and the change time, and nothing
// but the kernel sets the change time, so a file whose key is unchanged
// still holds what was hashed.
type digestKey struct {
	dev, ino, mnt, size uint64 // mnt: the unique mount id, where the kernel gives it
	mtime, ctime        int64  // nanoseconds since the epoch
}

// digestCacheSize is how many files' digests the cache keeps.
const digestCacheSize = 256

// digestCache is the process-wide cache of executable digests. Like
// lookupCache it is internal state, not configuration.
var digestCache = newDigestLRU(digestCacheSize)

// digestLRU is a bounded cache of digests that forgets the least recently
// used file first. It is safe for concurrent use. Two connections that
// miss on the same file at once both hash it.
type digestLRU struct {
	mu      sync.Mutex
	max     int
	entries map[digestKey]*list.Element // values are *digestEntry
	order   list.List                   // most recently used first
	hashes  atomic.Int64                // files hashed so far (misses)
}

type digestEntry struct {
	key digestKey
	sum string // lowercase hex
}

func newDigestLRU(max int) *digestLRU {
	return &digestLRU{max: max, entries: make(map[digestKey]*list.Element)}
}

// get returns the cached digest of the file with key k.
func (c *digestLRU) get(k digestKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return "", false
	}
	c.order.MoveToFront(e)
	return e.Value.(*digestEntry).sum, true
}

// put remembers the digest of the file with key k, forgetting the least
// recently used file when the cache is full.
func (c *digestLRU) put(k digestKey, sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		e.Value.(*digestEntry).sum = sum
		c.order.MoveToFront(e)
		return
	}
	c.entries[k] = c.order.PushFront(&digestEntry{key: k, sum: sum})
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.entries, old.Value.(*digestEntry).key)
	}
}

// len returns how many digests are cached.
func (c *digestLRU) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
