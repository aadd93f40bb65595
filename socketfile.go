package secnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// socketFile is a socket file created by Listen, removed by Close.
type socketFile struct {
	addr *net.UnixAddr
	id   fileID // the file created, so that Close removes only it
}

// remove unlinks the socket file unless another file has replaced it.
func (f *socketFile) remove() {
	if id, err := lstatFileID(f.addr.Name); err == nil && id == f.id {
		os.Remove(f.addr.Name)
	}
}

// listenUnix creates the listening socket for lc.
//
// A path socket is bound inside a new directory of mode 0700 next to the
// final path, where no other user can reach it; its mode and owner are
// set there; then it is hard-linked into place, which fails rather than
// replace an existing file. So the socket never appears at its path with
// wider permissions than asked, without touching the process umask.
func listenUnix(ctx context.Context, lc *ListenConfig, network, address string) (*net.UnixListener, *socketFile, error) {
	fail := func(err error) (*net.UnixListener, *socketFile, error) {
		return nil, nil, listenError(network, address, err)
	}
	if network != "unix" && network != "unixpacket" {
		return fail(net.UnknownNetworkError(network))
	}
	nlc := net.ListenConfig{Control: lc.Control}
	if len(address) > 0 && address[0] == '@' {
		if lc.Mode != 0 || lc.Owner != "" || lc.Group != "" {
			return fail(errors.New("an abstract socket has no file: Mode, Owner and Group cannot apply"))
		}
		ln, err := nlc.Listen(ctx, network, address)
		if err != nil {
			return nil, nil, err
		}
		return ln.(*net.UnixListener), nil, nil
	}
	if address == "" {
		return fail(errors.New("empty socket path"))
	}
	uid, gid, err := lookupOwner(lc.Owner, lc.Group)
	if err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(address), ".sn")
	if err != nil {
		return fail(err)
	}
	defer os.Remove(dir)
	tmp := filepath.Join(dir, "s")
	defer os.Remove(tmp)
	l, err := nlc.Listen(ctx, network, tmp)
	if err != nil {
		return fail(fmt.Errorf("binding in %s: %w", dir, err))
	}
	ln := l.(*net.UnixListener)
	ln.SetUnlinkOnClose(false)
	file, err := placeSocket(tmp, address, network, lc.Mode, uid, gid)
	if err != nil {
		ln.Close()
		return fail(err)
	}
	return ln, file, nil
}

// placeSocket sets the mode and owner of the socket at tmp and links it to
// address, replacing a stale socket file but nothing else.
func placeSocket(tmp, address, network string, mode os.FileMode, uid, gid int) (*socketFile, error) {
	if mode != 0 {
		if err := os.Chmod(tmp, mode.Perm()); err != nil {
			return nil, err
		}
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Lchown(tmp, uid, gid); err != nil {
			return nil, err
		}
	}
	err := os.Link(tmp, address)
	if errors.Is(err, os.ErrExist) {
		if err := removeStale(address); err != nil {
			return nil, err
		}
		err = os.Link(tmp, address)
	}
	if err != nil {
		return nil, err
	}
	id, err := lstatFileID(address)
	if err != nil {
		return nil, err
	}
	return &socketFile{addr: &net.UnixAddr{Name: address, Net: network}, id: id}, nil
}

// removeStale removes the socket file at path if no one listens on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (%s); not replacing it", path, fi.Mode().Type())
	}
	for _, network := range []string{"unix", "unixpacket"} {
		c, err := net.DialTimeout(network, path, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("another process is listening on %s: %w", path, syscall.EADDRINUSE)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EPROTOTYPE) {
			return fmt.Errorf("checking whether %s is in use: %w", path, err)
		}
	}
	return os.Remove(path)
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
