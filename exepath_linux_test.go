package secnet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// programPathOf accepts one client started from bin on a listener whose
// rule is Program(bin), and returns the Program path the listener read.
func programPathOf(t *testing.T, bin string) string {
	t.Helper()
	h := listen(t, Program(bin))
	startClient(t, bin, h.path, "echo", nil)
	return h.mustAccept(t).Peer().Program
}

// The path of an executable is remembered by file, mount and change time:
// a peer running a file seen before gets the path that file has now, not
// the one it had.
func TestProgramPathFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0755)
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0755); err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(sub, "a")
	if err := copyExecutable(a); err != nil {
		t.Fatal(err)
	}
	if got := programPathOf(t, a); got != a {
		t.Fatalf("Program = %q, want %q", got, a)
	}
	if got := programPathOf(t, a); got != a {
		t.Fatalf("second peer: Program = %q, want %q", got, a)
	}

	// Renaming the file sets its change time: the next peer reads the
	// new path at once.
	b := filepath.Join(sub, "b")
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if got := programPathOf(t, b); got != b {
		t.Fatalf("after rename: Program = %q, want %q", got, b)
	}

	// Renaming a directory above it changes nothing in the file: the old
	// path may be shown for up to exePathTTL, not longer.
	sub2 := filepath.Join(dir, "sub2")
	if err := os.Rename(sub, sub2); err != nil {
		t.Fatal(err)
	}
	b2 := filepath.Join(sub2, "b")
	time.Sleep(exePathTTL + 100*time.Millisecond)
	if got := programPathOf(t, b2); got != b2 {
		t.Fatalf("after renaming the directory and %v: Program = %q, want %q", exePathTTL, got, b2)
	}
}

// A peer running a program seen in the last second gets the path read
// for the first: the second peer costs no readlink.
func TestProgramPathRemembered(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0755)
	a := filepath.Join(dir, "a")
	if err := copyExecutable(a); err != nil {
		t.Fatal(err)
	}
	if got := programPathOf(t, a); got != a {
		t.Fatalf("Program = %q, want %q", got, a)
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, a, 0, exeStatx, &stx); err != nil {
		t.Fatal(err)
	}
	key, ok := exePathKeyOf(&stx)
	if !ok {
		t.Skip("paths are not remembered here (no unique mount id before Linux 6.8, or /proc of another pid namespace)")
	}
	if got, ok := rememberedExePath(key); !ok || got != a {
		t.Fatalf("remembered %q, %v; want %q", got, ok, a)
	}
	// Mark the entry: a peer that reads it shows the mark.
	const mark = "/remembered"
	exePaths.Store(key, &exePathEntry{path: mark, expires: time.Since(exePathEpoch) + exePathTTL})
	t.Cleanup(func() { exePaths.Delete(key) })
	if got := programPathOf(t, a); got != mark {
		t.Fatalf("second peer: Program = %q, want the remembered %q", got, mark)
	}
}

// A file with several names is never remembered: a peer running it under
// a name it chose must not have that name shown for the others.
func TestProgramPathHardLinks(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0755)
	a, chosen := filepath.Join(dir, "allowed"), filepath.Join(dir, "chosen-by-the-peer")
	if err := copyExecutable(a); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, chosen); err != nil {
		t.Skipf("cannot make a hard link: %v", err)
	}
	if got := programPathOf(t, chosen); got != chosen {
		t.Fatalf("Program = %q, want %q", got, chosen)
	}
	if got := programPathOf(t, a); got != a {
		t.Fatalf("a peer running the other name: Program = %q, want %q", got, a)
	}
}

// The same file reached through a bind mount has the mount's path: the
// path is remembered per mount.
func TestProgramPathPerMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a bind mount")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0755)
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	a := filepath.Join(src, "a")
	if err := copyExecutable(a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount %s: %v", src, err)
	}
	t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
	viaMount := filepath.Join(dst, "a")
	if got := programPathOf(t, a); got != a {
		t.Fatalf("Program = %q, want %q", got, a)
	}
	if got := programPathOf(t, viaMount); got != viaMount {
		t.Fatalf("through the bind mount: Program = %q, want %q", got, viaMount)
	}
	if got := programPathOf(t, a); got != a {
		t.Fatalf("again without the mount: Program = %q, want %q", got, a)
	}
}

// The cache is bounded: once full it is emptied, and what it holds is
// still right.
func TestExePathCacheBounded(t *testing.T) {
	t.Cleanup(func() { exePaths.Clear(); exePathCount.Store(0); exePathBytes.Store(0) })
	for i := range maxExePaths + 10 {
		rememberExePath(exePathKey{ino: uint64(i) + 1<<40}, "x")
	}
	n := 0
	exePaths.Range(func(any, any) bool { n++; return true })
	if n > maxExePaths {
		t.Fatalf("%d paths remembered, the bound is %d", n, maxExePaths)
	}
	if _, ok := rememberedExePath(exePathKey{ino: uint64(maxExePaths+9) + 1<<40}); !ok {
		t.Fatal("the newest path is not remembered")
	}
	// Remembering a file again counts once.
	exePaths.Clear()
	exePathCount.Store(0)
	exePathBytes.Store(0)
	for range 2 * maxExePaths {
		rememberExePath(exePathKey{ino: 1}, "x")
	}
	if n := exePathCount.Load(); n != 1 {
		t.Errorf("one file remembered %d times counts %d", 2*maxExePaths, n)
	}
	// Long paths empty it sooner.
	long := strings.Repeat("p", 4000)
	for i := range maxExePathBytes/len(long) + 2 {
		rememberExePath(exePathKey{ino: uint64(i) + 2}, long)
	}
	if b := exePathBytes.Load(); b > maxExePathBytes {
		t.Errorf("%d bytes of paths remembered, the bound is %d", b, maxExePathBytes)
	}
}
