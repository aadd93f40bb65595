package secnet

import (
	"context"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkIdentity measures each piece of the identity alone, on one
// connected socket, so that it is clear where the time goes.
func BenchmarkIdentity(b *testing.B) {
	path := filepath.Join(benchDir(b), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	sc, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	uc := sc.(*net.UnixConn)
	rc, _ := uc.SyscallConn()
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	pid := os.Getpid()
	exe := "/proc/" + strconv.Itoa(pid) + "/exe"

	b.Run("SO_PEERCRED", func(b *testing.B) {
		for b.Loop() {
			if _, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SO_PEERGROUPS", func(b *testing.B) {
		for b.Loop() {
			if _, err := peerGroups(fd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SO_PEERSEC", func(b *testing.B) {
		for b.Loop() {
			if _, err := peerLabel(fd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SO_PEERPIDFD+close", func(b *testing.B) {
		for b.Loop() {
			pfd, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEERPIDFD)
			if err != nil {
				b.Skip("no SO_PEERPIDFD:", err)
			}
			unix.Close(pfd)
		}
	})
	b.Run("readlink-exe", func(b *testing.B) {
		for b.Loop() {
			if _, err := os.Readlink(exe); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stat-exe", func(b *testing.B) {
		var st unix.Stat_t
		for b.Loop() {
			if err := unix.Stat(exe, &st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("liveness-poll", func(b *testing.B) {
		pfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			b.Skip("no pidfd_open:", err)
		}
		defer unix.Close(pfd)
		for b.Loop() {
			if alive, err := pidfdAlive(pfd); err != nil || !alive {
				b.Fatal(alive, err)
			}
		}
	})
	b.Run("program-recipe", func(b *testing.B) {
		for b.Loop() {
			p := (&identity{conn: uc}).load(attrProgram)
			if p.errs.program != nil {
				b.Fatal(p.errs.program)
			}
		}
	})
	b.Run("username-cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := lookupCache.uid("root"); err != nil {
				b.Skip(err)
			}
		}
	})
	b.Run("username-uncached", func(b *testing.B) {
		for b.Loop() {
			c := newNameCache(nameTTL)
			if _, err := c.uid("root"); err != nil {
				b.Skip(err)
			}
		}
	})
	for _, tc := range []struct {
		name string
		rule Rule
	}{
		{"verify-uid", UID(os.Geteuid())},
		// A deny rule on ids also reads the peer's user namespace.
		{"verify-not-uid", Not(UID(os.Geteuid() + 1))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			v := newVerifier([]Rule{tc.rule})
			for b.Loop() {
				if _, rej := v.verify(context.Background(), uc); rej != nil {
					b.Fatal(rej)
				}
			}
		})
	}
	// Early verdicts: the uid settles each, and the costlier rule is not
	// evaluated (no pidfd, no /proc, no hash).
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	var wrong [64]byte
	for _, tc := range []struct {
		name   string
		rules  []Rule
		accept bool
	}{
		{"verify-program", []Rule{Program(self)}, true},
		{"verify-uid-program-reject", []Rule{UID(os.Geteuid() + 1), Program(self)}, false},
		{"verify-anyof-uid-digest", []Rule{AnyOf(UID(os.Geteuid()), ProgramDigest(hex.EncodeToString(wrong[:32])))}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			v := newVerifier(tc.rules)
			for b.Loop() {
				sc, rej := v.verify(context.Background(), uc)
				if (rej == nil) != tc.accept {
					b.Fatal(rej)
				}
				if sc != nil && sc.id.peer.known&attrDigest != 0 {
					b.Fatal("hashed")
				}
			}
		})
	}
}
