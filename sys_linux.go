package secnet

import (
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds the system calls of the per-connection path, made
// without allocating: paths are built in fixed buffers on the stack and
// passed to the kernel as they are. x/sys/unix copies every path it is
// given into a new allocation. As the unsafe package requires, each
// pointer is converted to uintptr in the call expression of Syscall6.

// cpath is a NUL-terminated path in a fixed buffer.
type cpath struct {
	b [64]byte
	n int // length without the NUL
}

// procPath returns "/proc/<pid>/<name>". name must be short: the buffer
// holds any pid with a name of up to 40 bytes.
func procPath(pid int, name string) cpath {
	var p cpath
	s := append(p.b[:0], "/proc/"...)
	s = strconv.AppendInt(s, int64(pid), 10)
	s = append(s, '/')
	s = append(s, name...)
	p.n = len(s)
	p.b[p.n] = 0
	return p
}

// atFDCWD is AT_FDCWD (-100) as a system call argument.
func atFDCWD() uintptr {
	fd := unix.AT_FDCWD
	return uintptr(fd)
}

// String returns the path, for error messages.
func (p *cpath) String() string { return string(p.b[:p.n]) }

// readlinkPath is readlink(2) into buf; it returns the length read.
func readlinkPath(p *cpath, buf []byte) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, atFDCWD(), uintptr(unsafe.Pointer(&p.b[0])),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// statxPathMask is statx(2) of the file p names, following symlinks (so
// that /proc/<pid>/exe gives the executable itself), with flags (such as
// AT_STATX_DONT_SYNC), for the fields in mask.
func statxPathMask(p *cpath, flags, mask int, stx *unix.Statx_t) error {
	_, _, errno := unix.Syscall6(unix.SYS_STATX, atFDCWD(), uintptr(unsafe.Pointer(&p.b[0])), uintptr(flags),
		uintptr(mask), uintptr(unsafe.Pointer(stx)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// statxFDMask is statx(2) of the open file fd (AT_EMPTY_PATH), with flags,
// for the fields in mask.
func statxFDMask(fd, flags, mask int, stx *unix.Statx_t) error {
	var empty byte
	_, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(fd), uintptr(unsafe.Pointer(&empty)),
		uintptr(flags|unix.AT_EMPTY_PATH), uintptr(mask), uintptr(unsafe.Pointer(stx)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// openPath is open(2) of the file p names, with flags.
func openPath(p *cpath, flags int) (int, error) {
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, atFDCWD(), uintptr(unsafe.Pointer(&p.b[0])), uintptr(flags), 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// selfFDPath returns "/proc/self/fd/<fd>".
func selfFDPath(fd int) cpath {
	var p cpath
	s := append(p.b[:0], "/proc/self/fd/"...)
	s = strconv.AppendInt(s, int64(fd), 10)
	p.n = len(s)
	p.b[p.n] = 0
	return p
}

// peerCred is getsockopt(SO_PEERCRED) without the allocation of
// unix.GetsockoptUcred.
func peerCred(fd int) (unix.Ucred, error) {
	var uc unix.Ucred
	n := uint32(unsafe.Sizeof(uc))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERCRED,
		uintptr(unsafe.Pointer(&uc)), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return uc, errno
	}
	return uc, nil
}

// statxFileID converts what statx returned into the fileID that statFileID
// gives for the same file.
func statxFileID(stx *unix.Statx_t) fileID {
	return fileID{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), ino: stx.Ino}
}

// statxStamp converts what statx returned, with STATX_BTIME asked for,
// into an exeStamp.
func statxStamp(stx *unix.Statx_t) exeStamp {
	s := exeStamp{id: statxFileID(stx)}
	if stx.Mask&unix.STATX_BTIME != 0 {
		s.btime, s.hasBtime = stx.Btime.Sec*1e9+int64(stx.Btime.Nsec), true
	}
	return s
}
