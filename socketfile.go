package secnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// maxPathLen is the longest socket path, in bytes, that Listen binds:
// sun_path less the terminating NUL that C clients put there.
const maxPathLen = len(syscall.RawSockaddrUnix{}.Path) - 1

// socketFile is a socket file created by Listen, removed by Close.
type socketFile struct {
	addr *net.UnixAddr
	id   sockID // the file created, so that Close removes only it
}

// sockID identifies a socket file. Inode numbers are reused at once on
// some file systems: the type and the owner keep a file that another user
// created in a freed inode from passing for the socket.
type sockID struct {
	fileID
	uid uint32
}

var errNotSocket = errors.New("not a socket")

// remove unlinks the socket file unless another file has replaced it.
func (f *socketFile) remove() { removeIfSame(f.addr.Name, f.id) }

// removeIfSame unlinks path if it is still the socket id. It never
// removes a directory.
func removeIfSame(path string, id sockID) bool {
	if now, err := lstatSocket(path); err != nil || now != id {
		return false
	}
	return syscall.Unlink(path) == nil
}

// isAbstract reports whether address names a Linux abstract socket, in
// either form net.Listen accepts: "@name" or "\x00name".
func isAbstract(address string) bool {
	return len(address) > 0 && (address[0] == '@' || address[0] == 0)
}

// listenUnix creates the listening socket for lc (see bindUnix).
func listenUnix(ctx context.Context, lc *ListenConfig, network, address string) (*net.UnixListener, *socketFile, error) {
	if network != "unix" && network != "unixpacket" {
		return nil, nil, listenError(network, address, net.UnknownNetworkError(network))
	}
	s, file, err := bindUnix(ctx, lc, network, address, lc.Control, func(nlc *net.ListenConfig) (io.Closer, error) {
		l, err := nlc.Listen(ctx, network, address)
		if err != nil {
			return nil, err
		}
		ln := l.(*net.UnixListener)
		ln.SetUnlinkOnClose(false) // Close removes the file only if it is still ours
		return ln, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return s.(*net.UnixListener), file, nil
}

// bindUnix creates the socket file for lc: bind makes the socket (a
// listener, or a datagram socket) with the net.ListenConfig it is given,
// whose Control calls control.
//
// A path socket is bound at its own path, so that the kernel's name for
// it (Addr, every connection's LocalAddr, the client's RemoteAddr) is
// that path. When Mode, Owner or Group is set, the socket is restricted
// to its owner before bind (the file is created with at most mode&0700),
// then given its owner and group and its full mode through a handle that
// does not follow symlinks, and checked (see secureSocketFile). The
// process umask is never changed.
func bindUnix(ctx context.Context, lc *ListenConfig, network, address string,
	control func(network, address string, c syscall.RawConn) error,
	bind func(nlc *net.ListenConfig) (io.Closer, error)) (io.Closer, *socketFile, error) {
	fail := func(err error) (io.Closer, *socketFile, error) {
		return nil, nil, listenError(network, address, err)
	}
	nlc := net.ListenConfig{Control: control}
	if isAbstract(address) {
		if lc.Mode != 0 || lc.Owner != "" || lc.Group != "" {
			return fail(errors.New("an abstract socket has no file: Mode, Owner and Group cannot apply"))
		}
		s, err := bind(&nlc)
		if err != nil {
			return nil, nil, err
		}
		return s, nil, nil
	}
	if address == "" {
		return fail(errors.New("empty socket path"))
	}
	if len(address) > maxPathLen {
		return fail(fmt.Errorf("the socket path is %d bytes long; the limit is %d bytes (sun_path holds %d, with the terminating NUL)",
			len(address), maxPathLen, maxPathLen+1))
	}
	uid, gid, err := lookupOwner(lc.Owner, lc.Group)
	if err != nil {
		return fail(err)
	}
	mode := lc.Mode.Perm()
	secure := lc.Mode != 0 || uid >= 0 || gid >= 0
	if secure && lc.Mode == 0 {
		// net.Listen's mode, 0777 less the umask, is the final mode: it
		// must be known to keep the socket closed until the owner is set.
		if mode, err = defaultSocketMode(); err != nil {
			return fail(fmt.Errorf("a socket Owner or Group without a Mode: %w; set Mode", err))
		}
	}
	if secure {
		nlc.Control = func(network, address string, c syscall.RawConn) error {
			if control != nil {
				if err := control(network, address, c); err != nil {
					return err
				}
			}
			return restrictBeforeBind(c, mode&0700)
		}
	}
	s, err := bindReplacingStale(address, func() (io.Closer, error) { return bind(&nlc) })
	if err != nil {
		return fail(err)
	}
	var id sockID
	if secure {
		id, err = secureSocketFile(address, mode, uid, gid)
	} else {
		id, err = lstatSocket(address)
	}
	if err != nil {
		s.Close()
		return fail(err)
	}
	return s, &socketFile{addr: &net.UnixAddr{Name: address, Net: network}, id: id}, nil
}

// bindReplacingStale binds a socket at address with bind. If a file is in
// the way, it is removed only if it is a socket that nothing listens on,
// and the bind is tried again.
func bindReplacingStale(address string, bind func() (io.Closer, error)) (io.Closer, error) {
	for attempt := 0; ; attempt++ {
		s, err := bind()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, bindError(address, err)
		}
		if attempt == 3 {
			return nil, fmt.Errorf("a new file keeps appearing at the path while the stale one is removed: %w", syscall.EADDRINUSE)
		}
		if err := removeStale(address); err != nil {
			return nil, err
		}
	}
}

// bindError says in words why bind failed, naming the directory at fault.
func bindError(address string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err // listenUnix names the operation and the path
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err
	}
	dir := filepath.Dir(address)
	switch errno {
	case syscall.EACCES, syscall.EPERM:
		return fmt.Errorf("permission denied: %s (%w)", whichDirDenies(dir), errno)
	case syscall.ENOENT:
		return fmt.Errorf("the directory %q does not exist (%w)", dir, errno)
	case syscall.ENOTDIR:
		return fmt.Errorf("a component of the directory %q is not a directory (%w)", dir, errno)
	case syscall.EROFS:
		return fmt.Errorf("the directory %q is on a read-only file system (%w)", dir, errno)
	}
	return err
}

// whichDirDenies finds the directory that keeps this process from
// creating a file in dir: the first one above it it cannot search, or dir
// itself when it cannot write there.
func whichDirDenies(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	var chain []string
	for d := abs; ; d = filepath.Dir(d) {
		chain = append(chain, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if !canAccess(chain[i], accessSearch) {
			return fmt.Sprintf("this process (uid %d) cannot search the directory %q", os.Geteuid(), chain[i])
		}
	}
	if !canAccess(abs, accessWrite) {
		return fmt.Sprintf("this process (uid %d) cannot create files in the directory %q", os.Geteuid(), dir)
	}
	return fmt.Sprintf("creating a file in the directory %q", dir)
}

// removeStale removes the socket file at path if no one listens on it.
// Anything else is left in place: a live socket is EADDRINUSE, another
// kind of file an error that says what it is.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // gone meanwhile: bind again
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("the path exists and is %s, not a socket; it is left in place", fileKind(fi.Mode()))
	}
	id, err := lstatSocket(path)
	if err != nil {
		return nil // replaced meanwhile: bind again, and look again
	}
	for _, network := range []string{"unix", "unixpacket", "unixgram"} {
		c, err := net.DialTimeout(network, path, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("another process is listening on the socket at the path: %w", syscall.EADDRINUSE)
		}
		if errors.Is(err, syscall.ENOENT) {
			return nil // gone meanwhile: bind again
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPROTOTYPE) {
			return fmt.Errorf("checking whether the socket at the path is in use: %w", err)
		}
	}
	// Only the socket that was found unused is removed: if another file
	// took its place meanwhile, nothing is removed and bind says so.
	removeIfSame(path, id)
	return nil
}

// fileKind names the type of a file in words.
func fileKind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link"
	case fs.ModeNamedPipe:
		return "a named pipe"
	case fs.ModeSocket:
		return "a socket"
	case fs.ModeDevice:
		return "a block device"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "a character device"
	}
	return "a file of an unknown type"
}

// lookupOwner resolves user and group names or numeric ids; -1 for empty.
func lookupOwner(owner, group string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if owner != "" {
		if uid, err = strconv.Atoi(owner); err != nil {
			u, lerr := user.Lookup(owner)
			if lerr != nil {
				return -1, -1, fmt.Errorf("socket owner: %w", lerr)
			}
			uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if group != "" {
		if gid, err = strconv.Atoi(group); err != nil {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				return -1, -1, fmt.Errorf("socket group: %w", lerr)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return uid, gid, nil
}
