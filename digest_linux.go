package secnet

import (
	"crypto/sha256"
	"fmt"
	"strconv"

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

// readDigest returns the SHA-256 digest, in hex, of the executable of
// pid. The caller confirms through a pidfd that pid still is the peer. A
// stat of /proc/<pid>/exe, which reaches the file the process runs even
// when its path now names another file, gives the key of the cache; only
// on a miss is the file opened and hashed. When same is true the file
// must be exe, the file Program was read from: a peer that called execve
// in between fails.
func readDigest(pid int, exe fileID, same bool) (string, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/exe"
	var st unix.Stat_t
	if err := unix.Stat(name, &st); err != nil {
		return "", procError(name, err)
	}
	switch {
	case same && (fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}) != exe:
		return "", fmt.Errorf("%w (it called execve while its identity was read)", ErrProgramChanged)
	case st.Nlink == 0:
		return "", fmt.Errorf("%w (inode %d has no name left)", ErrProgramDeleted, st.Ino)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "", fmt.Errorf("%s is not a regular file", name)
	case st.Size > maxDigestSize:
		return "", fmt.Errorf("executable is %d bytes, more than the %d that are hashed", st.Size, maxDigestSize)
	}
	key := statDigestKey(&st)
	if sum, ok := digestCache.get(key); ok {
		return sum, nil
	}
	sum, err := hashExe(name, key)
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
// or called execve since the stat: only a digest of the content the key
// stands for is returned, and cached.
func hashExe(name string, key digestKey) (string, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", procError(name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", fmt.Errorf("fstat %s: %w", name, err)
	}
	if statDigestKey(&st) != key {
		return "", fmt.Errorf("%s changed while it was read", name)
	}
	sum, err := hashFD(fd, st.Size)
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", name, err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return "", fmt.Errorf("fstat %s: %w", name, err)
	}
	if statDigestKey(&st) != key {
		return "", fmt.Errorf("%s was modified while it was hashed", name)
	}
	return sum.hex(), nil
}

func statDigestKey(st *unix.Stat_t) digestKey {
	return digestKey{dev: uint64(st.Dev), ino: uint64(st.Ino), size: uint64(st.Size),
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
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
