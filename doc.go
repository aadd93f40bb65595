// Package secnet secures Unix domain sockets by verifying the process at
// the other end of each connection.
//
// Listen is a drop-in replacement for net.Listen("unix", path). It accepts
// connections, asks the kernel who is at the other end, applies the rules
// it was given, closes the connections that fail them, and hands only
// verified connections to the application:
//
//	ln, err := secnet.Listen("unix", "/run/myd.sock",
//		secnet.UID(0, 1000),              // the peer's uid is one of these
//		secnet.Program("/usr/bin/myctl"), // the peer runs this executable
//	)
//	// ln is a net.Listener: http.Serve(ln, h) and grpcServer.Serve(ln) work unchanged.
//	c, err := ln.Accept()
//	p := c.(*secnet.SecureConn).Peer() // p.PID, p.UID, p.GID, p.Groups, p.Program, p.Label
//
// # Types
//
// *Listener implements net.Listener; its Accept returns a *SecureConn typed
// as net.Conn. *SecureConn embeds *net.UnixConn, so it also implements
// net.Conn and every method of *net.UnixConn (file descriptor passing with
// ReadMsgUnix and WriteMsgUnix, CloseWrite, SyscallConn, ...), and adds
// Peer (and PeerBrief, the same less the cgroup and namespaces, for a
// log line per connection). A rejection is a *RejectError, which names every rule that was
// evaluated and failed, and why, and the rules that were not evaluated
// because the verdict was settled without them; errors.Is(err,
// ErrRejected) matches it. NewListener wraps a
// listener made elsewhere (systemd socket activation, tests).
//
// # Verification off the Accept path
//
// A Listener verifies connections concurrently, off the goroutine that
// calls Accept, so that no peer delays another: a peer whose executable
// sits on a file system that does not answer, a large program to hash, a
// handshake that waits for the peer, holds one slot of a bounded pool
// and nothing else. The first Accept starts a goroutine that takes
// connections from the inner listener and a pool (errgroup, SetLimit) of
// ListenConfig.Workers goroutines that verify them, each under
// ListenConfig.VerifyTimeout (10 s by default; a peer that outlasts it is
// rejected with ErrVerifyTimeout and its socket is closed at the
// deadline). Accept returns verified connections in the order their
// verification completed, from a queue of ListenConfig.QueueSize. One
// peer uid holds at most ListenConfig.WorkersPerUID workers; its further
// connections wait for them, and beyond QueueSize waiting ones, when its
// verifications are stalled (none ended for 50 ms), they are rejected
// with ErrTooManyPending; a burst of connections verified as fast as they
// come is taken from the backlog as it drains. When the queue is full the
// workers wait, and the listener stops taking connections from the
// kernel: its backlog applies as for a plain listener. Errors of the
// inner listener (EMFILE, ...) reach Accept unchanged, one per call, so
// servers back off as usual. Close closes every connection queued or
// being verified and waits for the listener's goroutines. The Rejected
// function is called from the goroutine that rejected the connection,
// so it must be safe for concurrent use.
//
// Rules that read only what the kernel captured at connect (UID, GID,
// InGroup, SameUser, User, Group, Label, Anyone), the executable (Program)
// or the namespaces (OnHost, SameNamespaces, Not of an id rule), and
// AnyOf, AllOf and Not of them, cannot wait on anything a peer controls:
// the executable's statx answers from the kernel's inode cache without
// asking a FUSE or NFS server. On a machine with one or two processors
// (GOMAXPROCS) a listener with such rules verifies inline in Accept, which
// costs their system calls and no handoff between goroutines, and uses
// none of the pipeline's knobs: a handoff would cost more than it gains.
// On more processors the workers verify them too, in parallel, so that
// the goroutine that takes connections from the kernel, which bounds the
// rate of a busy listener as the accept loop bounds a plain server's,
// does no more than accept, read the peer's uid and hand on.
// Cgroup, Unit, ProgramDigest, RuleFunc and handshakes always go through
// the pipeline. A RuleFunc or Handshake function that panics rejects its
// peer with a *PanicError (under Not as well) and the listener goes on.
//
// # What each rule proves
//
// The kernel records the peer's credentials when it calls connect(): the
// process id, the effective uid and gid (SO_PEERCRED), the supplementary
// groups (SO_PEERGROUPS) and the security label (SO_PEERSEC). The peer
// cannot change them afterwards, and they are translated into the
// listener's namespaces.
//
//   - UID, GID, SameUser and User prove the effective user or group of the
//     process that connected, at the moment it connected. A setuid program
//     connects with the uid it runs as.
//   - InGroup and Group also look at the supplementary groups.
//   - User and Group resolve names to ids when a peer is checked, through
//     a cache whose entries live 30 seconds: no NSS lookup per connection,
//     and changes to users and groups are seen within that time.
//   - Program proves which executable file the connecting process ran when
//     the listener accepted the connection. It is read from /proc/<pid>/exe
//     through a pidfd (SO_PEERPIDFD, Linux 6.5), which pins the process
//     that connected, so a pid reused by another process is never mistaken
//     for the peer. On older kernels secnet pins the pid with pidfd_open
//     and compares the process start time, which narrows that race to one
//     clock tick but does not close it. Program does not prove what the
//     process runs later (it may call execve), nor that the process is the
//     one that writes (it may hand the socket to another process).
//     Reading /proc/<pid>/exe of another user's process needs root (with
//     CAP_SYS_PTRACE); without it Program rules fail closed.
//   - ProgramDigest proves the content of that same executable file: its
//     SHA-256 digest, read through the same pidfd. It refuses files on
//     FUSE, NFS, SMB/CIFS, 9p, Ceph and other file systems whose server
//     decides what each reader gets (ErrRemoteFS). It checks content
//     where Program checks file identity, so a copy of an allowed program
//     at another path passes, and a program upgraded in place fails until
//     its new digest is allowed. A file is hashed once and its digest
//     cached by device, inode, size and times; a cached digest costs no
//     more than Program. The listener needs read permission on the
//     file. It proves nothing about the code the process loads later
//     (libraries, plugins, an interpreter's script).
//   - Label proves the LSM label of the peer as of connect().
//   - Cgroup and Unit prove the peer's cgroup, and the systemd unit that
//     systemd itself would report for it, when the listener accepted the
//     connection. They are read from /proc/<pid>/cgroup through the same
//     pidfd as Program. Root can move any process into any cgroup, and
//     the owner of a delegated subtree can create any name below it:
//     Unit names the first unit below the slices, so a user's units all
//     count as user@<uid>.service.
//   - SameNamespaces proves that the peer shares the listener's
//     namespaces of the kinds given; OnHost that it runs in the host's
//     initial user, pid, cgroup, ipc and uts namespaces, not in a
//     container. Both read /proc/<pid>/ns through the pidfd.
//
// Every rule fails closed: a peer whose identity cannot be read (it has
// exited, its pid is in another pid namespace, /proc cannot be read, its
// executable was deleted) fails every rule that needs the missing part,
// and Not of such a rule fails too.
//
// # Reading little, deciding early
//
// A listener reads only what its rules need, and in order of cost: what
// the kernel captured at connect() and gives for the socket (credentials,
// groups, label) first, then /proc through the peer's pidfd (program,
// cgroup, namespaces), then the digest of the executable. The rules given
// to Listen are an implicit AllOf. AllOf and AnyOf evaluate their rules
// cheapest first and stop once the verdict is settled: under
// AllOf(UID(0), Program(p)) a peer with uid 1 is rejected without /proc
// being read, and under AnyOf(UID(0), ProgramDigest(d)) root is accepted
// without a hash. A rejection names every rule that was evaluated and
// failed, and in RejectError.NotEvaluated the rules that were not (the
// costlier ones, once a cheaper rule had failed). UID rules cost one
// getsockopt and never touch /proc. A listener whose /proc belongs to
// another pid namespace (started with unshare --pid but no new /proc)
// finds each peer under the pid /proc gives the peer's pidfd, or fails
// closed.
//
// Allow-lists are the sound form of a policy; deny-lists on ids are not.
// A user with subordinate ids (/etc/subuid, the default for new users on
// most distributions) can connect from a user namespace of its own as
// one of those ids, or with its supplementary groups dropped: that
// passes no allow-list, but would escape Not(UID(x)) or Not(InGroup(g)).
// So Not of a rule on ids passes only a peer in the listener's user
// namespace; any other peer, or one whose namespaces cannot be read
// (another user's process, unless the listener is root with
// CAP_SYS_PTRACE), fails. Prefer UID(1000, 1001) to "everyone but 1002".
//
// # Handshakes
//
// Kernel identity cannot tell apart two containers that run as the same
// uid, nor name the program of a peer whose pid is 0. Handshake makes a
// rule that talks to the peer; SharedSecret is the built-in one, proof
// that the peer holds a key:
//
//	key, err := secnet.ReadSecretFile("/etc/myd/agent.key") // mode 0600 or 0400
//	ln, err := secnet.Listen("unix", "/run/myd.sock", secnet.UID(1000), secnet.SharedSecret(key))
//
//	// the client: Dial fails with a reason when the server refuses its key
//	d := secnet.Dialer{Rules: []secnet.Rule{secnet.UID(0)}, Handshake: secnet.ProveSharedSecret(key)}
//	c, err := d.DialContext(ctx, "unix", "/run/myd.sock")
//
// Handshake rules run only after every other rule passed, so a peer that
// fails a kernel rule is never challenged; they run under the verification
// deadline, never on the goroutine that calls Accept; what they read is
// consumed. They are valid only among the rules given to Listen,
// NewListener or Verify directly, not inside AnyOf, AllOf or Not. The
// SharedSecret answer is an HMAC-SHA256 of a fresh random challenge and of
// the server's uid as the client sees it, so a relay by another user is
// refused. It proves possession of the key, and so nothing when other
// users can read the key. SharedSecrets accepts several keys, for
// rotation. docs/handshake.md describes the exchange byte by byte.
//
// # Checking a peer again
//
// Rules decide when a connection is accepted. With KeepPidfd (in
// ListenConfig or Dialer, or (*Listener).SetKeepPidfd for NewListener) a
// *SecureConn also keeps the pidfd its verification opened for the peer,
// and a file of /proc/<pid> that pins the peer's memory map: two more
// file descriptors per connection, which Close closes (and the garbage collector, for a
// connection dropped without Close). Before a sensitive operation,
// (*SecureConn).Recheck then tells, without a pid race on Linux 6.5 and
// later:
//
//   - nil: the process that connected is alive and runs the executable
//     it ran when the connection was accepted;
//   - ErrPeerExited: it has exited;
//   - ErrProgramChanged: it has called execve since, even of the same
//     executable;
//   - ErrNoPidfd: the connection was not set up to keep the pidfd.
//
// Recheck does not tell who writes on the socket: a peer can hand the
// socket to another process and run on unchanged.
//
// # Containers and unmapped ids
//
// A peer in another pid namespace that is not a child of the listener's
// (the listener runs in a container, the peer on the host or in another
// container) has pid 0: uid and gid rules still decide, and every rule
// that needs the process (Program, Cgroup, Unit, SameNamespaces, OnHost)
// fails with ErrPIDNotVisible.
//
// A peer whose uid or gid has no mapping in the listener's user namespace
// appears as the overflow id (/proc/sys/kernel/overflowuid, 65534). That
// id is unknown, not the user nobody: UID, GID, InGroup, User, Group and
// SameUser fail on it, and Not of them fails too. A policy that accepts
// such peers says so with the number: UID(65534), GID(65534) or
// InGroup(65534); a name, even User("nobody"), never matches it. In the
// initial user namespace every id is mapped, so there 65534 is nobody.
// Peer.UnmappedIDs tells the application. docs/containers.md describes
// what the kernel reports for Docker, Podman, Kubernetes and systemd.
//
// # Clients, HTTP, gRPC and policy files
//
// Dial and Dialer verify the server from the client side: the process
// that created the listening socket. Verify checks a connection accepted
// or dialed elsewhere. For net/http, ConnContext with PeerFromContext
// gives handlers the peer, and Require guards a route with more rules.
// PeerOf finds the identity through wrappers such as *tls.Conn. gRPC
// transport credentials and per-method interceptors live in the module
// github.com/secnet/secnet/secnetgrpc, so that this package does not
// depend on grpc-go. Package github.com/secnet/secnet/policy reads the
// rules from a TOML policy file, the same files the secnet command uses.
//
// # Datagram sockets
//
// ListenPacket is the drop-in replacement for
// net.ListenPacket("unixgram", path): syslog (/dev/log), sd_notify
// receivers (NOTIFY_SOCKET), metrics agents. A datagram socket has no
// connection and SO_PEERCRED means nothing there; the kernel attaches the
// sender's identity to every datagram instead, and *PacketConn (a
// net.PacketConn) checks each datagram's sender against the rules when
// the application reads it:
//
//	pc, err := secnet.ListenPacket("unixgram", "/run/myd/notify",
//		secnet.UID(0), secnet.Program("/usr/sbin/myd"))
//	n, addr, peer, err := pc.ReadFromPeer(buf) // only datagrams that passed
//
// Datagrams whose sender fails are dropped and reported to
// ListenConfig.Rejected; ReadFrom goes on with the next one. UID, GID,
// User and SameUser see the ids the kernel attached when the datagram was
// sent (SCM_CREDENTIALS), which are the sender's real ids, where
// SO_PEERCRED on a connection gives the effective ones; they hold even
// when the sender has exited since. Rules that need the sender's process
// (InGroup and Group for the supplementary groups, Program,
// ProgramDigest, Cgroup, Unit, SameNamespaces, OnHost) read /proc through
// the pidfd that comes with the datagram (SCM_PIDFD, Linux 6.5; before
// that pidfd_open with a start-time check), as the process is when the
// datagram is read: a sender that has exited fails them with
// ErrPeerExited, and one that called execve after sending is seen running
// its new program. Label uses the datagram's SCM_SECURITY. A datagram
// with truncated control data or without credentials is rejected, and
// file descriptors passed with SCM_RIGHTS are always closed.
//
// # Socket files
//
// Listen binds the socket at its own path, as net.Listen does, so that
// Addr, every connection's LocalAddr and the client's RemoteAddr name it.
// With the Mode, Owner and Group of ListenConfig the socket is created
// open to its owner only (mode&0700, whatever the umask), then given its
// owner, group and mode through a handle that does not follow symlinks,
// and checked. Listen replaces a stale socket file that no process
// listens on, refuses to replace anything else (the error says what is
// there), and Close removes the file if it is still the one created.
//
// # Platforms
//
// Peer verification is implemented for Linux. The package builds on other
// Unix systems, where every peer is rejected with an error that names the
// operating system, and where ListenConfig's Mode, Owner and Group are an
// error (bind there does not honour a mode set before it). ListenPacket
// fails there, naming the operating system.
package secnet
