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
