package secnet

import "golang.org/x/sys/unix"

// statFileID returns the device and inode of the file at path, following
// symlinks. On Linux it uses statx, as the reading of /proc/<pid>/exe
// does, so that the two compare.
func statFileID(path string) (fileID, error) {
	return statxID(path, 0)
}

// lstatFileID is statFileID without following a final symlink.
func lstatFileID(path string) (fileID, error) {
	return statxID(path, unix.AT_SYMLINK_NOFOLLOW)
}

func statxID(path string, flags int) (fileID, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, flags, unix.STATX_INO, &stx); err != nil {
		return fileID{}, err
	}
	return statxFileID(&stx), nil
}

// lstatSocket is lstatFileID of a socket, with its owner, in one system
// call: it fails with errNotSocket for any other kind of file.
func lstatSocket(path string) (sockID, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_UID, &stx); err != nil {
		return sockID{}, err
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return sockID{}, errNotSocket
	}
	return sockID{statxFileID(&stx), stx.Uid}, nil
}
