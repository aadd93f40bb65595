package secnet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fileSHA256 returns the SHA-256 digest of the file at path in hex.
func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// modifiedCopy copies the test binary to dst with one byte appended, which
// changes its digest but not how it runs.
func modifiedCopy(t *testing.T, dst string) {
	t.Helper()
	if err := copyExecutable(dst); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{0}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestProgramDigestRule(t *testing.T) {
	bin := peerBinary(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sum := fileSHA256(t, self)
	dir := sockDir(t)
	cp := filepath.Join(dir, "copy")
	if err := copyExecutable(cp); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "mod")
	modifiedCopy(t, mod)
	modSum := fileSHA256(t, mod)
	if modSum == sum {
		t.Fatal("appending a byte did not change the digest")
	}
	zeros := strings.Repeat("0", 64)
	tests := []struct {
		name     string
		rule     Rule
		peer     string
		fallback bool // no SO_PEERPIDFD
		reason   []string
	}{
		{"match", ProgramDigest(sum), bin, false, nil},
		{"the test binary itself", ProgramDigest(sum), self, false, nil},
		{"copy at another path", ProgramDigest(sum), cp, false, nil},
		{"upper case with prefix", ProgramDigest("sha256:" + strings.ToUpper(sum)), bin, false, nil},
		{"one of several", ProgramDigest(zeros, sum), bin, false, nil},
		{"start-time fallback", ProgramDigest(sum), bin, true, nil},
		{"wrong digest", ProgramDigest(zeros), bin, false, []string{"programdigest:", "has sha256 " + sum, "is not " + zeros, bin}},
		{"modified copy", ProgramDigest(sum), mod, false, []string{"program " + strconv.Quote(mod) + " has sha256 " + modSum, "is not " + sum}},
		{"not of a modified copy", Not(ProgramDigest(sum)), mod, false, nil},
		{"not of the same content", Not(ProgramDigest(sum)), cp, false, []string{"peer matches programdigest(sha256:" + sum + ")"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := listen(t, tt.rule)
			h.ln.v.opts.noPeerPidfd = tt.fallback
			startClient(t, tt.peer, h.path, "talk", nil)
			c, rej := h.next(t)
			if tt.reason == nil {
				if rej != nil {
					t.Fatalf("rejected: %v", rej)
				}
				if p := c.Peer(); strings.HasPrefix(tt.rule.Name(), "programdigest") && p.ProgramSHA256 != sum {
					t.Errorf("Peer().ProgramSHA256 = %q, want %q", p.ProgramSHA256, sum)
				}
				return
			}
			if c != nil {
				t.Fatalf("accepted %v", c.Peer())
			}
			for _, want := range tt.reason {
				if !strings.Contains(rej.Error(), want) {
					t.Errorf("reason %q does not say %q", rej, want)
				}
			}
		})
	}
}

func TestProgramDigestInvalid(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"none", nil, "no SHA-256 digests given"},
		{"empty", []string{""}, "got 0 characters"},
		{"short", []string{hex64[:63]}, "got 63 characters"},
		{"long", []string{hex64 + "a"}, "got 65 characters"},
		{"not hex", []string{"g" + hex64[1:]}, "invalid byte"},
		{"other algorithm", []string{"sha512:" + hex64}, "not a SHA-256 digest"},
		{"one bad among good", []string{hex64, "xyz"}, `"xyz" is not a SHA-256 digest`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := ProgramDigest(tt.args...)
			err := r.Err()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "rule programdigest: ") {
				t.Fatalf("Err() = %v, want an error saying %q", err, tt.want)
			}
			if _, lerr := Listen("unix", filepath.Join(sockDir(t), "s"), r); lerr == nil {
				t.Fatal("Listen accepted an invalid rule")
			}
		})
	}
	r := ProgramDigest("SHA256:" + hex64)
	if r.Err() == nil {
		t.Fatal(`the prefix is "sha256:", in lower case; "SHA256:" was accepted`)
	}
	r = ProgramDigest(strings.ToUpper(hex64), "sha256:"+hex64)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if want := "programdigest(sha256:" + hex64 + ", sha256:" + hex64 + ")"; r.String() != want {
		t.Errorf("String() = %q, want %q", r.String(), want)
	}
}

// TestProgramDigestCache checks that an unchanged executable is hashed
// once, and that a file changed or replaced at the same path is hashed
// again.
func TestProgramDigestCache(t *testing.T) {
	cp := filepath.Join(sockDir(t), "peer")
	if err := copyExecutable(cp); err != nil {
		t.Fatal(err)
	}
	sum := fileSHA256(t, cp)
	h := listen(t, ProgramDigest(sum))
	connect := func(wantHashes int64) {
		t.Helper()
		before := digestCache.hashes.Load()
		startClient(t, cp, h.path, "talk", nil)
		h.mustAccept(t)
		if got := digestCache.hashes.Load() - before; got != wantHashes {
			t.Fatalf("the connection hashed %d files, want %d", got, wantHashes)
		}
	}
	connect(1) // a new file: hashed
	connect(0) // the same file: cached
	connect(0)

	// Touching the file changes its change time: hashed again.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(cp, later, later); err != nil {
		t.Fatal(err)
	}
	connect(1)
	connect(0)

	// A new file renamed over the old one has a new inode: hashed again.
	if err := copyExecutable(cp + ".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cp+".new", cp); err != nil {
		t.Fatal(err)
	}
	connect(1)
	connect(0)
}

// TestProgramDigestDeleted checks that a peer whose executable was
// deleted or replaced on disk after it started fails, as it fails Program.
func TestProgramDigestDeleted(t *testing.T) {
	testDeletedBinary(t, func(cp string) Rule { return ProgramDigest(fileSHA256(t, cp)) })
}

// TestProgramSHA256Method checks that the digest is read only when asked
// for when no rule needs it.
func TestProgramSHA256Method(t *testing.T) {
	bin := peerBinary(t)
	sum := fileSHA256(t, bin)
	h := listen(t, UID(os.Geteuid()))
	startClient(t, bin, h.path, "hold", nil)
	c := h.mustAccept(t)
	if p := c.Peer(); p.ProgramSHA256 != "" || p.Program != bin {
		t.Fatalf("Peer() = program %q sha256 %q, want program %q and no digest yet", p.Program, p.ProgramSHA256, bin)
	}
	got, err := c.ProgramSHA256()
	if err != nil || got != sum {
		t.Fatalf("ProgramSHA256() = %q, %v, want %q", got, err, sum)
	}
	if p := c.Peer(); p.ProgramSHA256 != sum {
		t.Fatalf("Peer().ProgramSHA256 = %q after ProgramSHA256(), want %q", p.ProgramSHA256, sum)
	}
}

func TestProgramSHA256PeerExited(t *testing.T) {
	bin := peerBinary(t)
	h := listen(t, UID(os.Geteuid()))
	cl := startClient(t, bin, h.path, "exit", nil)
	cl.wait(t)
	c := h.mustAccept(t)
	if got, err := c.ProgramSHA256(); !errors.Is(err, ErrPeerExited) || got != "" {
		t.Fatalf("ProgramSHA256() = %q, %v, want ErrPeerExited", got, err)
	}
}

func TestDigestLRU(t *testing.T) {
	c := newDigestLRU(3)
	key := func(i int) digestKey { return digestKey{ino: uint64(i)} }
	sum := func(i int) string { return strconv.Itoa(i) }
	for i := 1; i <= 3; i++ {
		c.put(key(i), sum(i))
	}
	if d, ok := c.get(key(1)); !ok || d != sum(1) { // 1 is now the most recent
		t.Fatalf("get(1) = %v, %v", d, ok)
	}
	c.put(key(4), sum(4)) // evicts 2, the least recently used
	if c.len() != 3 {
		t.Fatalf("len = %d, want 3", c.len())
	}
	if _, ok := c.get(key(2)); ok {
		t.Error("2 was not evicted")
	}
	for _, i := range []int{1, 3, 4} {
		if d, ok := c.get(key(i)); !ok || d != sum(i) {
			t.Errorf("get(%d) = %v, %v", i, d, ok)
		}
	}
	c.put(key(3), sum(9)) // an update does not grow the cache
	if d, _ := c.get(key(3)); d != sum(9) || c.len() != 3 {
		t.Errorf("after update: get(3) = %v, len = %d", d, c.len())
	}
	for i := range 1000 {
		c.put(key(100+i), sum(i))
	}
	if c.len() != 3 {
		t.Errorf("len = %d after 1000 puts, want 3", c.len())
	}
}
