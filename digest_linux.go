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

// readDigest returns the SHA-256 digest of the executable of pid. The
// caller confirms through a pidfd that pid still is the peer. It opens
// /proc/<pid>/exe, which is the file the process runs even when its path
// now names another file, and takes the digest from the cache when the
// file's key is there. When same is true the file must be exe, the file
// Program was read from: a peer that called execve in between fails.
func readDigest(pid int, exe fileID, same bool) (exeDigest, error) {
	name := "/proc/" + strconv.Itoa(pid) + "/exe"
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return exeDigest{}, procError(name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return exeDigest{}, fmt.Errorf("fstat %s: %w", name, err)
	}
	id := fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	switch {
	case same && id != exe:
		return exeDigest{}, fmt.Errorf("%w (it called execve while its identity was read)", ErrProgramChanged)
	case st.Nlink == 0:
		return exeDigest{}, fmt.Errorf("%w (inode %d has no name left)", ErrProgramDeleted, st.Ino)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return exeDigest{}, fmt.Errorf("%s is not a regular file", name)
	case st.Size > maxDigestSize:
		return exeDigest{}, fmt.Errorf("executable is %d bytes, more than the %d that are hashed", st.Size, maxDigestSize)
	}
	key := statDigestKey(&st)
	if sum, ok := digestCache.get(key); ok {
		return sum, nil
	}
	sum, err := hashFD(fd, st.Size)
	if err != nil {
		return exeDigest{}, fmt.Errorf("hashing %s: %w", name, err)
	}
	// A running executable cannot be opened for writing (ETXTBSY), but
	// the file may have stopped running meanwhile: cache only a digest of
	// content that did not change while it was read.
	if err := unix.Fstat(fd, &st); err != nil {
		return exeDigest{}, fmt.Errorf("fstat %s: %w", name, err)
	}
	if statDigestKey(&st) != key {
		return exeDigest{}, fmt.Errorf("the executable was modified while it was hashed")
	}
	digestCache.hashes.Add(1)
	digestCache.put(key, sum)
	return sum, nil
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
