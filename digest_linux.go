package secnet

import (
	"crypto/sha256"
	"fmt"

	"golang.org/x/sys/unix"
)

// programRead returns the file that Program was read from, when it was
// read now (exeID, exeErr) or on an earlier call, so that the digest can
// be checked to be of that same file.
func programRead(want attrs, p *Peer, exeID fileID, exeErr error) (fileID, bool) {
	switch {
	case want&attrProgram != 0:
		return exeID, exeErr == nil
	case p.known&attrProgram != 0 && p.errs.program == nil:
		return p.exe, true
	}
	return fileID{}, false
}

// digestStatx is what readDigest asks statx for.
const digestStatx = unix.STATX_TYPE | unix.STATX_INO | unix.STATX_NLINK | unix.STATX_SIZE |
	unix.STATX_MTIME | unix.STATX_CTIME

// readDigest returns the SHA-256 digest, in hex, of the executable of
// pid. The caller confirms through a pidfd that pid still is the peer. A
// statx of /proc/<pid>/exe, which reaches the file the process runs even
// when its path now names another file, gives the key of the cache; only
// on a miss is the file opened and hashed. When same is true the file
// must be exe, the file Program was read from: a peer that called execve
// in between fails. read, when not nil, is the statx of /proc/<pid>/exe
// that readExe made within the same pidfd check, with the fields of
// digestStatx: it is used instead of a statx of its own.
func readDigest(pid int, exe fileID, same bool, read *unix.Statx_t) (string, error) {
	link := procPath(pid, "exe")
	var stx unix.Statx_t
	if read != nil {
		stx = *read
	} else if err := statxPathMask(&link, digestStatx, &stx); err != nil {
		return "", procError(link.String(), err)
	}
	switch {
	case stx.Mask&digestStatx != digestStatx:
		return "", fmt.Errorf("statx %s: the file system did not give %#x of the fields %#x", link.String(), stx.Mask, digestStatx)
	case same && statxFileID(&stx) != exe:
		return "", fmt.Errorf("%w (it called execve while its identity was read)", ErrProgramChanged)
	case stx.Nlink == 0:
		return "", fmt.Errorf("%w (inode %d has no name left)", ErrProgramDeleted, stx.Ino)
	case stx.Mode&unix.S_IFMT != unix.S_IFREG:
		return "", fmt.Errorf("%s is not a regular file", link.String())
	case stx.Size > maxDigestSize:
		return "", fmt.Errorf("executable is %d bytes, more than the %d that are hashed", stx.Size, maxDigestSize)
	}
	key := statxDigestKey(&stx)
	if sum, ok := digestCache.get(key); ok {
		return sum, nil
	}
	sum, err := hashExe(link.String(), key)
	if err != nil {
		return "", err
	}
	digestCache.hashes.Add(1)
	digestCache.put(key, sum)
	return sum, nil
}

// hashExe hashes the file at name, /proc/<pid>/exe, which must be the
// file with key, unchanged until the hash is done. A running executable
// cannot be opened for writing (ETXTBSY), but the process may have exited
// or called execve since the statx: only a digest of the content the key
// stands for is returned, and cached.
func hashExe(name string, key digestKey) (string, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", procError(name, err)
	}
	defer unix.Close(fd)
	unchanged := func(when string) error {
		var stx unix.Statx_t
		if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, digestStatx, &stx); err != nil {
			return fmt.Errorf("statx %s: %w", name, err)
		}
		if statxDigestKey(&stx) != key {
			return fmt.Errorf("%s changed %s", name, when)
		}
		return nil
	}
	if err := unchanged("before it was opened"); err != nil {
		return "", err
	}
	sum, err := hashFD(fd, int64(key.size))
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", name, err)
	}
	if err := unchanged("while it was hashed"); err != nil {
		return "", err
	}
	return sum.hex(), nil
}

func statxDigestKey(stx *unix.Statx_t) digestKey {
	return digestKey{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), ino: stx.Ino, size: stx.Size,
		mtime: stx.Mtime.Sec*1e9 + int64(stx.Mtime.Nsec), ctime: stx.Ctime.Sec*1e9 + int64(stx.Ctime.Nsec)}
}

// hashFD hashes size bytes of fd from offset 0 with pread, which neither
// moves nor depends on a file offset.
func hashFD(fd int, size int64) (exeDigest, error) {
	h := sha256.New()
	buf := make([]byte, 128<<10)
	var off int64
	for {
		n, err := unix.Pread(fd, buf, off)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return exeDigest{}, err
		case n == 0:
			if off != size {
				return exeDigest{}, fmt.Errorf("read %d bytes of %d", off, size)
			}
			var d exeDigest
			h.Sum(d[:0])
			return d, nil
		}
		h.Write(buf[:n])
		off += int64(n)
		if off > size {
			return exeDigest{}, fmt.Errorf("file grew past %d bytes while it was read", size)
		}
	}
}
