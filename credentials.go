package secnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Errors that explain why part of a peer's identity could not be read.
// They appear, wrapped, in the reasons of a *RejectError and can be tested
// with errors.Is.
var (
	// ErrPeerExited means the peer process exited (or was reaped) before
	// its identity could be confirmed.
	ErrPeerExited = errors.New("peer process has exited")
	// ErrPIDNotVisible means the kernel reported pid 0: the peer runs in a
	// pid namespace that is not visible from the listener's.
	ErrPIDNotVisible = errors.New("peer pid is not visible (the peer runs in another pid namespace)")
	// ErrProgramDeleted means the peer's executable was deleted or replaced
	// on disk after the peer started it.
	ErrProgramDeleted = errors.New("peer's executable was deleted or replaced on disk")
	// ErrProcUnavailable means /proc/<pid> of the peer could not be read
	// (not mounted, hidepid, or no ptrace-read permission on the peer).
	ErrProcUnavailable = errors.New("peer's /proc entry cannot be read")
	// ErrNoCredentials means the socket carries no peer credentials
	// (for example a datagram socket).
	ErrNoCredentials = errors.New("socket has no peer credentials")
	// ErrRemoteFS means ProgramDigest refused to hash an executable on a
	// file system whose content a server provides (FUSE, NFS, SMB/CIFS,
	// 9p, Ceph, AFS, ...): the server can give the listener other bytes
	// than the execve that runs the file.
	ErrRemoteFS = errors.New("executable is on a file system whose server decides its content")
	// ErrUnsupported means the identity attribute cannot be read on this
	// operating system.
	ErrUnsupported = errors.New("not supported on this operating system")
)

// attrs is a set of identity attributes. Each rule declares the set it
// needs, so that a listener reads nothing more than its rules look at.
type attrs uint8

const (
	attrCred       attrs = 1 << iota // PID, UID, GID (SO_PEERCRED)
	attrGroups                       // supplementary groups (SO_PEERGROUPS)
	attrLabel                        // LSM label (SO_PEERSEC)
	attrProgram                      // executable, through a pidfd and /proc
	attrCgroup                       // cgroup and systemd unit, through a pidfd and /proc
	attrNamespaces                   // namespace ids, through a pidfd and /proc
	attrDigest                       // SHA-256 of the executable, through a pidfd and /proc

	// attrAll is what (*SecureConn).Peer reads: everything but the digest,
	// which costs a hash of the executable when it is not cached.
	attrAll = attrCred | attrGroups | attrLabel | attrProgram | attrCgroup | attrNamespaces
	// attrBrief is what (*SecureConn).PeerBrief reads.
	attrBrief = attrCred | attrGroups | attrLabel | attrProgram
)

// fileID identifies a file by device and inode number.
type fileID struct {
	dev, ino uint64
}

// Peer is the identity of the process at the other end of a Unix socket,
// as the kernel reports it.
//
// The listener reads only what its rules need when it accepts a
// connection; (*SecureConn).Peer reads the rest the first time it is called.
// An attribute that could not be read keeps its zero value; the reason is
// kept and reported by every rule that needs the attribute, and by Err.
type Peer struct {
	// PID is the peer's process id (its thread-group id) as of connect(),
	// from SO_PEERCRED, translated into the listener's pid namespace. It is
	// 0 when the peer's pid namespace is not visible from the listener's.
	// The number alone is not proof of anything once the peer may have
	// exited: pids are reused. secnet reads /proc through a pidfd so that
	// Program is never read from another process that got the same pid.
	PID int

	// UID is the peer's effective user id as of connect() (for a client
	// verifying a server: as of the server's listen()), from SO_PEERCRED.
	// The kernel captured it at that moment; a later setuid by the peer
	// does not change it. It is translated into the listener's user
	// namespace: an id with no mapping there reads as the overflow id
	// (65534 on most systems), which no uid or user rule matches unless
	// it names that id explicitly (see UnmappedIDs).
	UID int

	// GID is the peer's effective primary group id, captured and
	// translated as UID is.
	GID int

	// Groups are the peer's supplementary group ids as of connect(), from
	// SO_PEERGROUPS (Linux 4.13 and later). The kernel's list does not
	// include GID unless the peer also holds it as a supplementary group.
	Groups []int

	// Program is the path of the peer's executable, read from
	// /proc/<pid>/exe when the listener accepted the connection (or when
	// Peer was first called, if no rule needed it). It is read through a
	// pidfd, so it belongs to the process that connected, and it is the
	// executable at that moment: a peer that calls execve after connecting
	// has a new one. The path is the one the peer's mount namespace shows;
	// the Program rule compares files (device and inode), not strings. The
	// path read for a file with a single name is reused for a second for
	// the same file on the same mount: after a directory above it is
	// renamed, Program may show the old path for up to a second.
	Program string

	// Label is the peer's LSM security label as of connect(), from
	// SO_PEERSEC: an SELinux context, an AppArmor profile with its mode, or
	// a Smack label. It is empty when no security module that labels
	// sockets is active.
	Label string

	// Cgroup is the path of the peer's cgroup, read from /proc/<pid>/cgroup
	// through a pidfd when a rule needed it (or when Peer was first
	// called): the cgroup v2 path, or on a legacy or hybrid layout where
	// the process sits at the root of the v2 hierarchy, its path in the
	// name=systemd hierarchy. It is relative to the root of the listener's
	// cgroup namespace. See docs/containers.md.
	Cgroup string

	// Unit is the systemd unit Cgroup belongs to, as systemd derives it:
	// the first path component after the slices, e.g. "sshd.service",
	// "session-4.scope", "docker-<id>.scope", or "user@1000.service" for
	// every process of user 1000's service manager. It is empty when the
	// cgroup is in no unit.
	Unit string

	// Slice is the innermost slice that holds Unit, e.g. "system.slice"
	// or "user-1000.slice"; empty when there is none.
	Slice string

	// UserUnit is the unit of the user's service manager that holds the
	// peer, when Unit is a user@<uid>.service, e.g. "dbus.service". The
	// user owns that subtree and can create any name in it: UserUnit
	// proves nothing that the uid does not.
	UserUnit string

	// Namespaces holds the ids of the peer's namespaces, read from
	// /proc/<pid>/ns through a pidfd when a rule needed them (or when
	// Peer was first called). SharesNamespaces compares them with the
	// listener's own.
	Namespaces Namespaces

	// ProgramSHA256 is the SHA-256 digest of the peer's executable file,
	// in lowercase hex, read through the pidfd with Program when a
	// ProgramDigest rule needed it or (*SecureConn).ProgramSHA256 was
	// called; Peer alone does not compute it. See ProgramDigest.
	ProgramSHA256 string

	known attrs       // attributes that were read (successfully or not)
	errs  errSet      // why an attribute could not be read
	exe   fileID      // the file behind Program
	ovf   overflowIDs // the overflow ids of the listener's user namespace
}

// errSet holds the error met while reading each attribute.
type errSet struct {
	cred, groups, label, program error
	cgroup, namespaces, digest   error
}

// Err reports why parts of the identity could not be read: nil when every
// attribute that was asked for was read.
func (p *Peer) Err() error {
	return errors.Join(p.errs.cred, p.errs.groups, p.errs.label, p.errs.program,
		p.errs.cgroup, p.errs.namespaces, p.errs.digest)
}

// String formats the peer for logs, e.g.
// "pid=1234 uid=1000 gid=1000 groups=[27 100] program="/usr/bin/myctl".
// Attributes that were not read are left out.
func (p *Peer) String() string {
	var b strings.Builder
	b.WriteString("pid=")
	b.WriteString(strconv.Itoa(p.PID))
	b.WriteString(" uid=")
	b.WriteString(strconv.Itoa(p.UID))
	b.WriteString(" gid=")
	b.WriteString(strconv.Itoa(p.GID))
	if p.known&attrGroups != 0 && p.errs.groups == nil {
		fmt.Fprintf(&b, " groups=%v", p.Groups)
	}
	if p.Program != "" {
		b.WriteString(" program=")
		b.WriteString(strconv.Quote(p.Program))
	}
	if p.Label != "" {
		b.WriteString(" label=")
		b.WriteString(strconv.Quote(p.Label))
	}
	if p.Cgroup != "" {
		b.WriteString(" cgroup=")
		b.WriteString(strconv.Quote(p.Cgroup))
	}
	return b.String()
}

// Username returns the name of the user with the peer's UID. Names are
// looked up on demand and cached for a bounded time (see the package
// documentation).
func (p *Peer) Username() (string, error) {
	return lookupCache.userName(p.UID)
}

// GroupNames returns the names of the peer's primary group followed by
// its supplementary groups. Like Username, the names are cached.
func (p *Peer) GroupNames() ([]string, error) {
	out := make([]string, 0, 1+len(p.Groups))
	for _, gid := range p.gids() {
		n, err := lookupCache.groupName(gid)
		if err != nil {
			return out, err
		}
		out = append(out, n)
	}
	return out, nil
}

// gids returns the primary gid followed by the supplementary ones.
func (p *Peer) gids() []int {
	return append([]int{p.GID}, p.Groups...)
}

// hasGroup reports whether gid is the peer's primary or one of its
// supplementary groups.
func (p *Peer) hasGroup(gid int) bool {
	if p.GID == gid {
		return true
	}
	for _, g := range p.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// fail records err for each attribute in want that was not read yet.
func (p *Peer) fail(want attrs, err error) {
	for _, e := range []struct {
		a   attrs
		err *error
	}{{attrCred, &p.errs.cred}, {attrGroups, &p.errs.groups}, {attrLabel, &p.errs.label}, {attrProgram, &p.errs.program},
		{attrCgroup, &p.errs.cgroup}, {attrNamespaces, &p.errs.namespaces}, {attrDigest, &p.errs.digest}} {
		if want&e.a != 0 && p.known&e.a == 0 {
			*e.err = err
		}
	}
	p.known |= want
}

// need returns the error that prevents a rule needing a from deciding, or
// nil when a was read.
func (p *Peer) need(a attrs) error {
	if p.known&attrCred == 0 {
		return errors.New("peer credentials were not read")
	}
	if p.errs.cred != nil {
		return p.errs.cred
	}
	switch {
	case a&attrGroups != 0 && p.errs.groups != nil:
		return p.errs.groups
	case a&attrLabel != 0 && p.errs.label != nil:
		return p.errs.label
	case a&attrProgram != 0 && p.errs.program != nil:
		return p.errs.program
	case a&attrCgroup != 0 && p.errs.cgroup != nil:
		return p.errs.cgroup
	case a&attrNamespaces != 0 && p.errs.namespaces != nil:
		return p.errs.namespaces
	case a&attrDigest != 0 && p.errs.digest != nil:
		return p.errs.digest
	}
	if missing := a &^ p.known; missing != 0 {
		return fmt.Errorf("peer identity was not read (%s)", missing)
	}
	return nil
}

func (a attrs) String() string {
	var parts []string
	for _, n := range []struct {
		a    attrs
		name string
	}{{attrCred, "credentials"}, {attrGroups, "groups"}, {attrLabel, "label"}, {attrProgram, "program"},
		{attrCgroup, "cgroup"}, {attrNamespaces, "namespaces"}, {attrDigest, "program digest"}} {
		if a&n.a != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ", ")
}

// procAttrs are the attributes read from /proc/<pid>, through one pidfd;
// sockAttrs those the kernel captured at connect() and gives for the
// socket.
const (
	procAttrs = attrProgram | attrCgroup | attrNamespaces | attrDigest
	sockAttrs = attrCred | attrGroups | attrLabel
)

// readOptions tune how the identity is read; the zero value is right
// outside tests.
type readOptions struct {
	// noPeerPidfd makes the Linux reader behave as on a kernel without
	// SO_PEERPIDFD, so that the fallback can be tested on a new kernel.
	noPeerPidfd bool
	// noMemFile makes the reader behave as a listener without
	// ptrace-attach access, which cannot open /proc/<pid>/mem, so that
	// Recheck's use of /proc/<pid>/environ can be tested as root.
	noMemFile bool
}

// identity reads the attributes of a connected Unix socket on demand and
// remembers them. It is safe for concurrent use.
//
// Identity flows one way: the socket gives the credentials, groups and
// label; the first attribute that needs /proc opens one pidfd for the peer
// (SO_PEERPIDFD), through which every /proc read of the verification is
// confirmed; with KeepPidfd that pidfd is the one the connection keeps for
// Recheck, otherwise it is closed when the verification ends.
type identity struct {
	mu   sync.Mutex
	conn *net.UnixConn
	opts readOptions
	peer Peer
	ev   evaluation // the verification in progress

	keep bool // keep the peer's pidfd (and what pins its memory map) for Recheck
	proc procHandle
}

// load reads the attributes in want that were not read yet and returns
// the peer. A failure is recorded in the peer, never returned alone.
func (id *identity) load(want attrs) Peer {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.read(context.Background(), want)
	id.proc.release()
	return id.peer
}

// read reads the attributes in want that were not read yet, unless ctx
// is done: then they fail with the context's cause. The caller holds mu.
func (id *identity) read(ctx context.Context, want attrs) {
	p := &id.peer
	missing := want &^ p.known
	if missing == 0 {
		return
	}
	if p.known&attrCred == 0 {
		missing |= attrCred
	}
	if err := stopped(ctx); err != nil {
		p.fail(missing, err)
		return
	}
	readIdentity(ctx, id, missing)
}

// stopped returns why reading must stop: nil, or the cause of ctx when it
// is done.
func stopped(ctx context.Context) error {
	if ctx == nil || ctx.Err() == nil {
		return nil
	}
	return fmt.Errorf("verification stopped before the identity was read: %w", context.Cause(ctx))
}
