package secnet

import (
	"context"
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

// digestStatx is what readDigest asks statx for. The unique mount id
// (Linux 6.8) is part of the cache key: device numbers of FUSE and other
// anonymous file systems are reused once they are unmounted, mount ids
// never, so a key seen on a mount that was checked (see remoteFS) never
// matches a file on another.
const digestStatx = unix.STATX_TYPE | unix.STATX_INO | unix.STATX_NLINK | unix.STATX_SIZE |
	unix.STATX_MTIME | unix.STATX_CTIME | unix.STATX_MNT_ID_UNIQUE

// readDigest returns the SHA-256 digest, in hex, of the executable of
// pid. The caller confirms through a pidfd that pid still is the peer. A
// statx of /proc/<pid>/exe, which reaches the file the process runs even
// when its path now names another file, gives the key of the cache; only
// on a miss is the file opened and hashed. When same is true the file
// must be exe, the file Program was read from: a peer that called execve
// in between fails. read, when not nil, is the statx of /proc/<pid>/exe
// that readExe made within the same pidfd check, with the fields of
// digestStatx: it is used instead of a statx of its own. A file on a file
// system whose content a server provides (see remoteFS) is not hashed.
// Hashing stops once ctx is done.
func readDigest(ctx context.Context, pid int, exe fileID, same bool, read *unix.Statx_t) (string, error) {
	link := procPath(pid, "exe")
	var stx unix.Statx_t
	if read != nil {
		stx = *read
	} else if err := statxPathMask(&link, unix.AT_STATX_DONT_SYNC, digestStatx, &stx); err != nil {
		return "", procError(link.String(), err)
	}
	const need = digestStatx &^ unix.STATX_MNT_ID_UNIQUE
	switch {
	case stx.Mask&need != need:
		return "", fmt.Errorf("statx %s: the file system did not give %#x of the fields %#x", link.String(), stx.Mask, need)
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
	if stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		// Before Linux 6.8 the key cannot tell mounts apart: check the
		// file system of every file, cached or not.
		var fs unix.Statfs_t
		if err := unix.Statfs(link.String(), &fs); err != nil {
			return "", procError(link.String(), err)
		}
		if err := remoteFS(fs.Type); err != nil {
			return "", err
		}
	}
	if sum, ok := digestCache.get(key); ok {
		return sum, nil
	}
	sum, err := hashExe(ctx, link.String(), key)
	if err != nil {
		return "", err
	}
	digestCache.hashes.Add(1)
	digestCache.put(key, sum)
	return sum, nil
}

// remoteFS returns an error when the file system with the statfs type
// magic serves content that a process (a FUSE daemon) or a remote server
// provides, and can provide differently to each reader: the listener
// hashing a file would learn nothing about what the peer's execve ran.
func remoteFS(magic int64) error {
	var name string
	switch uint32(magic) {
	case unix.FUSE_SUPER_MAGIC:
		name = "FUSE"
	case unix.NFS_SUPER_MAGIC:
		name = "NFS"
	case unix.SMB_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC, unix.CIFS_SUPER_MAGIC:
		name = "SMB/CIFS"
	case unix.V9FS_MAGIC:
		name = "9p"
	case unix.CEPH_SUPER_MAGIC:
		name = "Ceph"
	case unix.AFS_SUPER_MAGIC, unix.AFS_FS_MAGIC:
		name = "AFS"
	case unix.CODA_SUPER_MAGIC:
		name = "Coda"
	case orangeFSMagic:
		name = "OrangeFS"
	default:
		return nil
	}
	return fmt.Errorf("%w: the executable is on a %s file system (type %#x), whose server decides what each reader gets: its digest proves nothing about what runs", ErrRemoteFS, name, uint32(magic))
}

// orangeFSMagic is ORANGEFS_DEVREQ_MAGIC, the f_type of OrangeFS, which
// x/sys does not name.
const orangeFSMagic = 0x20030528

// hashExe hashes the file at name, /proc/<pid>/exe, which must be the
// file with key, unchanged until the hash is done, and on a file system
// whose content no server provides. A running executable cannot be opened
// for writing (ETXTBSY), but the process may have exited or called execve
// since the statx: only a digest of the content the key stands for is
// returned, and cached.
func hashExe(ctx context.Context, name string, key digestKey) (string, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", procError(name, err)
	}
	defer unix.Close(fd)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return "", fmt.Errorf("fstatfs %s: %w", name, err)
	}
	if err := remoteFS(fs.Type); err != nil {
		return "", err
	}
	unchanged := func(when string) error {
		var stx unix.Statx_t
		if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, digestStatx, &stx); err != nil {
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
	sum, err := hashFD(ctx, fd, int64(key.size))
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", name, err)
	}
	if err := unchanged("while it was hashed"); err != nil {
		return "", err
	}
	return sum.hex(), nil
}

func statxDigestKey(stx *unix.Statx_t) digestKey {
	return digestKey{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), ino: stx.Ino, mnt: stx.Mnt_id, size: stx.Size,
		mtime: stx.Mtime.Sec*1e9 + int64(stx.Mtime.Nsec), ctime: stx.Ctime.Sec*1e9 + int64(stx.Ctime.Nsec)}
}

// hashFD hashes size bytes of fd from offset 0 with pread, which neither
// moves nor depends on a file offset. It stops once ctx is done.
func hashFD(ctx context.Context, fd int, size int64) (exeDigest, error) {
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
		if err := stopped(ctx); err != nil {
			return exeDigest{}, err
		}
		if off > size {
			return exeDigest{}, fmt.Errorf("file grew past %d bytes while it was read", size)
		}
	}
}
