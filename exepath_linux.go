package secnet

import (
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
// A path is remembered only as one read through a single open file (the
// executable opened with O_PATH, then statx and readlink of that file
// descriptor), so that it belongs to the file it is remembered for even
// when the peer calls execve meanwhile. The key holds the unique mount
// id (the path is the mount's: another mount namespace or a bind mount
// has another id), the device, inode and birth time, and the change
// time, which renaming, linking or unlinking the file sets. Renaming a
// directory above the file changes none of them: for up to exePathTTL
// Peer.Program may then show the path the file had before. That path was
// the file's on that mount a moment ago, so it shows nothing the owner of
// the directory could not have shown anyway; rules compare files, not
// paths.

// exePathTTL bounds how long a path is reused, as filesRecheck does for
// the files of Program rules.
const exePathTTL = time.Second

// maxExePaths bounds the entries; the cache is emptied when it is full.
const maxExePaths = 4096

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
	exePathEpoch = time.Now()
)

// exePathKeyOf returns the key of the file statx described, and false
// when the kernel did not report every field of it (the unique mount id
// needs Linux 6.8) or this process's /proc is not its own (then
// /proc/self cannot name the open file): such paths are not remembered.
func exePathKeyOf(stx *unix.Statx_t) (exePathKey, bool) {
	const need = unix.STATX_INO | unix.STATX_BTIME | unix.STATX_CTIME | unix.STATX_MNT_ID_UNIQUE
	if stx.Mask&need != need {
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
	if exePathCount.Add(1) > maxExePaths {
		exePaths.Clear()
		exePathCount.Store(1)
	}
	exePaths.Store(key, &exePathEntry{path: path, expires: time.Since(exePathEpoch) + exePathTTL})
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
	if keyed && stx.Nlink > 0 {
		if path, ok := rememberedExePath(key); ok {
			return path, statxStamp(stx), nil
		}
	}
	var buf [unix.PathMax]byte
	var n int
	if keyed {
		// Path and identity of one open file.
		fd, err := openPath(&link, unix.O_PATH|unix.O_CLOEXEC)
		if err != nil {
			return "", exeStamp{}, procError(link.String(), err)
		}
		err = statxFDMask(fd, unix.AT_STATX_DONT_SYNC, mask|exeStatx, stx)
		if err == nil {
			fdLink := selfFDPath(fd)
			n, err = readlinkPath(&fdLink, buf[:])
		}
		unix.Close(fd)
		if err != nil {
			return "", exeStamp{}, procError(link.String(), err)
		}
		key, keyed = exePathKeyOf(stx)
	} else {
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
