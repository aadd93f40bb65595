package secnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Program passes a peer whose executable is one of the files at paths.
// Each path must be absolute and name an executable regular file (a
// directory or a file without execute permission, which no process can
// run, makes the rule invalid: see Rule.Err); it is resolved through
// symlinks when the rule is built. The peer's executable is compared as a file (device and
// inode), not as a string, with the file found at the resolved path when
// the peer is checked (looked up again at most once a second): a copy of
// the program elsewhere does not match, a program upgraded in place does
// (ProgramDigest compares content instead). A peer whose executable was
// deleted or replaced after it started, whose pid is not visible, that
// has exited, or whose /proc entry cannot be read fails, with the reason.
func Program(paths ...string) Rule {
	if len(paths) == 0 {
		return invalid("program", errors.New("no paths given"))
	}
	resolved := make([]string, len(paths))
	for i, p := range paths {
		r, err := programPath(p)
		if err != nil {
			return invalid("program", err)
		}
		resolved[i] = r
	}
	files := &programFiles{paths: resolved}
	return leaf("program", "program("+strings.Join(paths, ", ")+")", attrCred|attrProgram, func(p *Peer) error {
		if p.exe != (fileID{}) && slices.Contains(files.ids(), p.exe) {
			return nil
		}
		return fmt.Errorf("peer program %q is not %s", p.Program, orList(paths))
	})
}

// programPath checks that p can name a program: an absolute path to an
// executable regular file. It returns p resolved through symlinks.
func programPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q is not absolute", p)
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(r)
	if err != nil {
		return "", err
	}
	switch {
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%q is %s, not an executable file: no process can run it", p, fileKind(fi.Mode()))
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%q is not executable (mode %#o has no execute permission): no process can run it", p, fi.Mode().Perm())
	}
	return r, nil
}

// filesRecheck bounds how long the identity of a Program rule's files is
// reused before the files are looked up again, so that an upgrade in place
// is seen within that time without a stat per connection. Reusing it is
// safe: a process still running a replaced file has an executable that is
// deleted, which fails on its own.
const filesRecheck = time.Second

// programFiles is the set of files a Program rule allows.
type programFiles struct {
	paths []string // resolved through symlinks
	cur   atomic.Pointer[fileSnapshot]
}

type fileSnapshot struct {
	ids     []fileID // zero for a path that was not found, which matches nothing
	expires time.Time
}

// ids returns the identities of the files, looked up again once they are
// older than filesRecheck.
func (f *programFiles) ids() []fileID {
	now := time.Now()
	if s := f.cur.Load(); s != nil && now.Before(s.expires) {
		return s.ids
	}
	ids := make([]fileID, len(f.paths))
	for i, p := range f.paths {
		ids[i], _ = statFileID(p)
	}
	f.cur.Store(&fileSnapshot{ids: ids, expires: now.Add(filesRecheck)})
	return ids
}
