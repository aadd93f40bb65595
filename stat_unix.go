//go:build unix && !linux

package secnet

import "syscall"

// statFileID returns the device and inode of the file at path, following
// symlinks.
func statFileID(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// lstatFileID is statFileID without following a final symlink.
func lstatFileID(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// lstatSocket is lstatFileID of a socket, with its owner, in one system
// call: it fails with errNotSocket for any other kind of file.
func lstatSocket(path string) (sockID, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return sockID{}, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
		return sockID{}, errNotSocket
	}
	return sockID{fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, st.Uid}, nil
}
