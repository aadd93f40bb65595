package secnet

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The path of a peer's executable, remembered by file.
//
// The Program rule compares files, which one statx of /proc/<pid>/exe
// identifies; the path that Peer.Program shows takes a readlink, which
// costs as much again. The path of a file changes far less often than
// connections come, so it is remembered by the identity of the file and
// of the mount it was reached through, for at most exePathTTL: a peer
// that runs a program seen in the last second costs a statx and no
// readlink.
//
// Only a file with a single name is remembered: the names of a file with
// hard links are all its paths, and a peer could run the file under a
// name of its choosing to have it shown for the others. A path is
// remembered only as one read through a single open file (the executable
// opened with O_PATH, then statx and readlink of that file descriptor),
// so that it belongs to the file it is remembered for even when the peer
// calls execve meanwhile. The key holds the unique mount id (the path is
// the mount's: another mount namespace or a bind mount has another id),
// the device, inode and birth time, and the change time, which renaming,
// linking or unlinking the file sets (to the clock tick before Linux
// 6.13, which may leave a rename within one tick unseen). Renaming a
// directory above the file, or moving a mount, changes none of them: for
// up to exePathTTL Peer.Program may then show the path the file had
// before. That path was the file's only name on that mount a moment ago,
// so it shows nothing the owner of the directory could not have shown
// anyway; rules compare files, not paths.

// exePathTTL bounds how long a path is reused, as filesRecheck does for
// the files of Program rules.
const exePathTTL = time.Second

// The cache is emptied when it holds maxExePaths files or maxExePathBytes
// bytes of paths.
const (
	maxExePaths     = 1024
	maxExePathBytes = 256 << 10
)

// exeStatx is what readExe asks statx for: the birth time tells a file
// from a later one that reuses its inode number (see Recheck), the change
// time and unique mount id key the remembered path.
const exeStatx = unix.STATX_INO | unix.STATX_NLINK | unix.STATX_BTIME | unix.STATX_CTIME | unix.STATX_MNT_ID_UNIQUE

type exePathKey struct {
	mnt, dev, ino uint64
	btime, ctime  unix.StatxTimestamp
}

type exePathEntry struct {
	path    string
	expires time.Duration // since exePathEpoch, on the monotonic clock
}

var (
	exePaths     sync.Map // exePathKey → *exePathEntry
	exePathCount atomic.Int64
	exePathBytes atomic.Int64
	exePathEpoch = time.Now()
)

// exePathKeyOf returns the key of the file statx described, and false
// when its path is not to be remembered: it has more than one name (or
// none), the kernel did not report every field of the key (the unique
// mount id needs Linux 6.8), or this process's /proc is not its own
// (then /proc/self cannot name the open file).
func exePathKeyOf(stx *unix.Statx_t) (exePathKey, bool) {
	const need = unix.STATX_NLINK | unix.STATX_INO | unix.STATX_BTIME | unix.STATX_CTIME | unix.STATX_MNT_ID_UNIQUE
	if stx.Mask&need != need || stx.Nlink != 1 {
		return exePathKey{}, false
	}
	if own, err := procOwn(); err != nil || !own {
		return exePathKey{}, false
	}
	return exePathKey{
		mnt: stx.Mnt_id, dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), ino: stx.Ino,
		btime: stx.Btime, ctime: stx.Ctime,
	}, true
}

// rememberedExePath returns the path remembered for key, if it is still
// fresh.
func rememberedExePath(key exePathKey) (string, bool) {
	v, ok := exePaths.Load(key)
	if !ok {
		return "", false
	}
	e := v.(*exePathEntry)
	if time.Since(exePathEpoch) >= e.expires {
		return "", false
	}
	return e.path, true
}

// rememberExePath remembers path for key.
func rememberExePath(key exePathKey, path string) {
	e := &exePathEntry{path: path, expires: time.Since(exePathEpoch) + exePathTTL}
	if _, replaced := exePaths.Swap(key, e); replaced {
		return
	}
	if exePathCount.Add(1) > maxExePaths || exePathBytes.Add(int64(len(path))) > maxExePathBytes {
		exePaths.Clear()
		exePathCount.Store(0)
		exePathBytes.Store(0)
	}
}

// readExe reads the path and the file identity of /proc/<pid>/exe. stx
// receives what statx gave for the file, with the fields of mask as well
// as those of exeStatx, so that a digest needs no second statx.
//
// The statx does not ask the file system to refresh what it cached
// (AT_STATX_DONT_SYNC): the device and inode number are known without it,
// and a FUSE or NFS server (which the peer may run) is not asked. Whether
// the file was deleted is decided by its link count, not by its name: a
// file may be called "x (deleted)".
func readExe(pid, mask int, stx *unix.Statx_t) (string, exeStamp, error) {
	link := procPath(pid, "exe")
	if err := statxPathMask(&link, unix.AT_STATX_DONT_SYNC, mask|exeStatx, stx); err != nil {
		return "", exeStamp{}, procError(link.String(), err)
	}
	key, keyed := exePathKeyOf(stx)
	if keyed {
		if path, ok := rememberedExePath(key); ok {
			return path, statxStamp(stx), nil
		}
	}
	var buf [unix.PathMax]byte
	n := -1
	if keyed {
		var err error
		n, key, keyed, err = readExeFile(&link, mask, stx, buf[:])
		if err != nil {
			return "", exeStamp{}, err
		}
	}
	if n < 0 {
		var err error
		if n, err = readlinkPath(&link, buf[:]); err != nil {
			return "", exeStamp{}, procError(link.String(), err)
		}
	}
	if n == len(buf) {
		return "", exeStamp{}, fmt.Errorf("%w: %s: the path is longer than PATH_MAX", ErrProcUnavailable, link.String())
	}
	path := string(buf[:n])
	if stx.Nlink == 0 {
		return "", exeStamp{}, fmt.Errorf("%w: %q", ErrProgramDeleted, path)
	}
	if keyed {
		rememberExePath(key, path)
	}
	return path, statxStamp(stx), nil
}

// readExeFile reads the path and identity of the executable link names
// through one open file, into buf and stx, and returns the length of the
// path and the file's key. Without a descriptor to spare (EMFILE, ENFILE)
// it returns n < 0: the caller reads the path from link, and remembers
// nothing.
func readExeFile(link *cpath, mask int, stx *unix.Statx_t, buf []byte) (n int, key exePathKey, keyed bool, err error) {
	fd, err := openPath(link, unix.O_PATH|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return -1, exePathKey{}, false, nil
	case err != nil:
		return 0, exePathKey{}, false, procError(link.String(), err)
	}
	defer unix.Close(fd)
	fdLink := selfFDPath(fd)
	if err := statxFDMask(fd, unix.AT_STATX_DONT_SYNC, mask|exeStatx, stx); err != nil {
		return 0, exePathKey{}, false, fmt.Errorf("%w: statx of %s, opened from %s: %v", ErrProcUnavailable, fdLink.String(), link.String(), err)
	}
	if n, err = readlinkPath(&fdLink, buf); err != nil {
		return 0, exePathKey{}, false, fmt.Errorf("%w: readlink %s, opened from %s: %v", ErrProcUnavailable, fdLink.String(), link.String(), err)
	}
	key, keyed = exePathKeyOf(stx)
	return n, key, keyed, nil
}
