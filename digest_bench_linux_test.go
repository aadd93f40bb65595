package secnet

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// reset empties the cache, so that the next digest is computed.
func (c *digestLRU) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.order.Init()
}

// BenchmarkProgramDigest measures one connection at a time (dial, accept,
// close; the client is this process) with a plain net.Listener, UID
// rules, Program, and ProgramDigest with the digest cached (warm) and
// computed for every connection (cold, the test binary), then what
// KeepPidfd and Recheck cost.
func BenchmarkProgramDigest(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(exe)
	if err != nil {
		b.Fatal(err)
	}
	sum := fileSHA256(b, exe)
	uid := UID(os.Geteuid())
	for _, v := range []struct {
		name  string
		rules []Rule // nil: plain net.Listener
		keep  bool
		cold  bool
	}{
		{"plain", nil, false, false},
		{"uid", []Rule{uid}, false, false},
		{"program", []Rule{uid, Program(exe)}, false, false},
		{"digest-warm", []Rule{uid, ProgramDigest(sum)}, false, false},
		{"digest-cold", []Rule{uid, ProgramDigest(sum)}, false, true},
		{"uid+keep-pidfd", []Rule{uid}, true, false},
	} {
		b.Run(v.name, func(b *testing.B) {
			path := filepath.Join(benchDir(b), "s")
			var ln net.Listener
			if v.rules == nil {
				ln, err = net.Listen("unix", path)
			} else {
				lc := ListenConfig{KeepPidfd: v.keep}
				ln, err = lc.Listen(context.Background(), "unix", path, v.rules...)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			b.ReportAllocs()
			for b.Loop() {
				if v.cold {
					digestCache.reset()
				}
				c, err := net.Dial("unix", path)
				if err != nil {
					b.Fatal(err)
				}
				s, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
				c.Close()
			}
			if v.cold {
				b.ReportMetric(float64(st.Size())/1e6, "MB-hashed/op")
			}
		})
	}
	b.Run("read", func(b *testing.B) {
		benchRead(b)
	})
	b.Run("recheck", func(b *testing.B) {
		lc := ListenConfig{KeepPidfd: true}
		ln, err := lc.Listen(context.Background(), "unix", filepath.Join(benchDir(b), "s"), uid)
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		s, err := ln.AcceptSecure()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Recheck(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchRead measures only the reading of the identity from /proc, on one
// connected socket: what ProgramDigest adds to Program per connection.
func benchRead(b *testing.B) {
	ln, err := net.Listen("unix", filepath.Join(benchDir(b), "s"))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	uc := s.(*net.UnixConn)
	for _, v := range []struct {
		name string
		want attrs
		cold bool
	}{
		{"program", attrProgram, false},
		{"program+digest-warm", attrProgram | attrDigest, false},
		{"program+digest-cold", attrProgram | attrDigest, true},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v.cold {
					digestCache.reset()
				}
				p := (&identity{conn: uc}).load(v.want)
				if err := p.Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
