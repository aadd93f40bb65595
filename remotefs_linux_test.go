package secnet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRemoteFSClassification checks which file systems ProgramDigest
// refuses, with the f_type of real mounts where there are some.
func TestRemoteFSClassification(t *testing.T) {
	for _, path := range []string{"/", "/proc", "/dev/shm", "/sys", os.TempDir()} {
		var fs unix.Statfs_t
		if err := unix.Statfs(path, &fs); err != nil {
			t.Logf("statfs %s: %v", path, err)
			continue
		}
		if err := remoteFS(fs.Type); err != nil {
			t.Errorf("%s (type %#x): %v, want a local file system", path, fs.Type, err)
		}
	}
	for magic, name := range map[int64]string{unix.FUSE_SUPER_MAGIC: "FUSE", unix.NFS_SUPER_MAGIC: "NFS",
		unix.SMB2_SUPER_MAGIC: "SMB", unix.CIFS_SUPER_MAGIC: "CIFS", unix.V9FS_MAGIC: "9p",
		unix.CEPH_SUPER_MAGIC: "Ceph", unix.AFS_FS_MAGIC: "AFS"} {
		err := remoteFS(magic)
		if !errors.Is(err, ErrRemoteFS) || !strings.Contains(err.Error(), name) {
			t.Errorf("type %#x: %v, want ErrRemoteFS naming %s", magic, err, name)
		}
	}
}

// TestProgramDigestRefusesFUSE runs a peer from a FUSE mount (bindfs of a
// directory holding a copy of the test binary): ProgramDigest must refuse
// to hash it, since the FUSE daemon could serve the listener other bytes
// than the execve, and say why.
func TestProgramDigestRefusesFUSE(t *testing.T) {
	f := mountFUSECopy(t)
	bin := f.onFUSE
	sum := fileSHA256(t, bin)
	h := listen(t, ProgramDigest(sum))
	startClient(t, bin, h.path, "talk", nil)
	rej := h.mustReject(t)
	if !errors.Is(rej, ErrRemoteFS) || !strings.Contains(rej.Error(), "FUSE") {
		t.Fatalf("rejection %v, want ErrRemoteFS naming FUSE", rej)
	}
	// The same file, run from the directory bindfs serves, passes.
	startClient(t, f.local, h.path, "talk", nil)
	h.mustAccept(t)
}

// TestProgramOnStalledFUSE runs a peer whose executable is on a FUSE
// mount, then stops the FUSE daemon (SIGSTOP: every request to it waits):
// a Program rule, which the listener verifies on Accept's goroutine
// (with one or two processors; in a worker with more), still
// decides that peer without asking the daemon (the statx of
// /proc/<pid>/exe answers from the inode cache), and the next, allowed,
// peer is accepted.
func TestProgramOnStalledFUSE(t *testing.T) {
	f := mountFUSECopy(t)
	local := f.local
	h := listen(t, Program(local))
	if want := runtime.GOMAXPROCS(0) <= inlineProcs; h.ln.inline != want {
		t.Fatalf("a Program rule verified inline: %v, want %v with GOMAXPROCS %d", h.ln.inline, want, runtime.GOMAXPROCS(0))
	}
	onFUSE := startClient(t, f.onFUSE, h.path, "hold", nil)
	if got := onFUSE.line(t); got != "connected" {
		t.Fatalf("peer on FUSE: %q", got)
	}
	f.stop(t)
	time.Sleep(1500 * time.Millisecond) // past the kernel's cache of the file's attributes (1 s)
	rej := h.mustReject(t)
	if !strings.Contains(rej.Error(), "is not "+local) {
		t.Errorf("peer on FUSE: %v, want rejected as another program", rej)
	}
	startClient(t, local, h.path, "talk", nil)
	h.mustAccept(t)
	f.resume()
}

// fuseCopy is a copy of the test binary in a directory (local) and the
// same file seen through a bindfs FUSE mount of that directory (onFUSE),
// served by a daemon in the foreground whose pid the test may stop.
type fuseCopy struct {
	local, onFUSE string
	daemon        *exec.Cmd
}

// mountFUSECopy makes a fuseCopy, or skips when FUSE cannot be mounted
// here. Cleanup resumes a stopped daemon, unmounts and ends it.
func mountFUSECopy(t *testing.T) *fuseCopy {
	t.Helper()
	requireRoot(t)
	bindfs, err := exec.LookPath("bindfs")
	if err != nil {
		t.Skip("needs bindfs (package bindfs) to mount a FUSE file system")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse:", err)
	}
	dir := sockDir(t)
	src, mnt := filepath.Join(dir, "src"), filepath.Join(dir, "mnt")
	for _, d := range []string{src, mnt} {
		if err := os.Mkdir(d, 0755); err != nil {
			t.Fatal(err)
		}
	}
	f := &fuseCopy{local: filepath.Join(src, "peer"), onFUSE: filepath.Join(mnt, "peer")}
	if err := copyExecutable(f.local); err != nil {
		t.Fatal(err)
	}
	f.daemon = exec.Command(bindfs, "-f", src, mnt) // in the foreground: its pid is ours to stop
	if err := f.daemon.Start(); err != nil {
		t.Skip("bindfs:", err)
	}
	t.Cleanup(func() {
		f.resume()
		unix.Unmount(mnt, unix.MNT_DETACH)
		f.daemon.Process.Kill()
		f.daemon.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var fs unix.Statfs_t
		if unix.Statfs(f.onFUSE, &fs) == nil && fs.Type == unix.FUSE_SUPER_MAGIC {
			return f
		}
		if time.Now().After(deadline) {
			t.Skip("bindfs did not mount within 10s")
		}
	}
}

// stop stops the FUSE daemon: every request to it waits until resume.
func (f *fuseCopy) stop(t *testing.T) {
	t.Helper()
	if err := f.daemon.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// resume lets a stopped FUSE daemon answer again.
func (f *fuseCopy) resume() { f.daemon.Process.Signal(syscall.SIGCONT) }
