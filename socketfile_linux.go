package secnet

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// restrictBeforeBind sets the mode of the socket c before bind: Linux
// creates the file with the socket's mode less the umask, so it is never
// wider than mode.
func restrictBeforeBind(c syscall.RawConn, mode os.FileMode) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = unix.Fchmod(int(fd), uint32(mode.Perm())) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("restricting the socket to its owner before bind: %w", err)
	}
	return nil
}

// secureSocketFile gives the socket file that bind just created at path
// its owner and group (-1: unchanged) and then its full mode, and checks
// the result. It works on a handle opened without following a symlink:
// if anything but the file bind created (a socket of this process's
// user, with at most mode&0700, one link) is at the path, it changes
// nothing and fails. It returns the identity of the file, for Close.
func secureSocketFile(path string, mode os.FileMode, uid, gid int) (sockID, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return sockID{}, fmt.Errorf("opening the new socket file: %w", err)
	}
	defer unix.Close(fd)
	var stx unix.Statx_t
	if err := statxFD(fd, &stx); err != nil {
		return sockID{}, err
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFSOCK || int(stx.Uid) != os.Geteuid() || stx.Nlink != 1 ||
		uint32(stx.Mode)&0o7777&^uint32(mode&0o700) != 0 {
		return sockID{}, errors.New("the file at the path is not the socket just bound (replaced meanwhile?); it is left in place")
	}
	id := sockID{statxFileID(&stx), stx.Uid}
	fail := func(err error) (sockID, error) {
		removeIfSame(path, id)
		return sockID{}, err
	}
	if uid >= 0 || gid >= 0 {
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return fail(fmt.Errorf("setting the owner of the socket file to %d:%d: %w", uid, gid, err))
		}
		if uid >= 0 {
			id.uid = uint32(uid)
		}
	}
	if err := chmodHandle(fd, uint32(mode.Perm())); err != nil {
		return fail(fmt.Errorf("setting the mode of the socket file to %#o: %w", mode.Perm(), err))
	}
	if err := statxFD(fd, &stx); err != nil {
		return fail(err)
	}
	switch {
	case uint32(stx.Mode)&0o7777 != uint32(mode.Perm()):
		return fail(fmt.Errorf("the socket file has mode %#o after chmod, not %#o", stx.Mode&0o7777, mode.Perm()))
	case uid >= 0 && int(stx.Uid) != uid, gid >= 0 && int(stx.Gid) != gid:
		return fail(fmt.Errorf("the socket file is owned by %d:%d after chown, not %d:%d", stx.Uid, stx.Gid, uid, gid))
	}
	return id, nil
}

func statxFD(fd int, stx *unix.Statx_t) error {
	mask := unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_UID | unix.STATX_GID | unix.STATX_NLINK | unix.STATX_INO
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, mask, stx); err != nil {
		return fmt.Errorf("reading the new socket file: %w", err)
	}
	return nil
}

// chmodHandle changes the mode of the file that the O_PATH handle fd
// refers to: with fchmodat2 (Linux 6.6), else through /proc/self/fd,
// which reaches the same file (a socket, never a symlink).
func chmodHandle(fd int, mode uint32) error {
	err := unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

// defaultSocketMode is the mode net.Listen gives a socket file: 0777 less
// the umask, read from /proc/self/status (Linux 4.7) since asking the
// kernel with umask(2) would change it for the whole process meanwhile.
func defaultSocketMode() (os.FileMode, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("cannot read the umask: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				return 0, fmt.Errorf("cannot read the umask: %q: %w", v, err)
			}
			return 0o777 &^ os.FileMode(m), nil
		}
	}
	return 0, errors.New("cannot read the umask: /proc/self/status has no Umask line (Linux before 4.7)")
}

type accessKind uint32

const (
	accessSearch = accessKind(unix.X_OK)
	accessWrite  = accessKind(unix.W_OK | unix.X_OK)
)

// canAccess reports whether this process's effective ids allow access to
// the directory dir.
func canAccess(dir string, k accessKind) bool {
	return unix.Faccessat(unix.AT_FDCWD, dir, uint32(k), unix.AT_EACCESS) == nil
}
