package secnet

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkConnCycle measures whole connection cycles: N clients at once
// each connect, write a byte, read the reply and close; the server
// accepts, reads and replies. "plain" is net.Listen, the baseline.
func BenchmarkConnCycle(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	user, err := lookupCache.userName(os.Geteuid())
	if err != nil {
		b.Skip("no name for our uid:", err)
	}
	group, err := lookupCache.groupName(os.Getegid())
	if err != nil {
		b.Skip("no name for our gid:", err)
	}
	variants := []struct {
		name  string
		rules []Rule // nil: plain net.Listener
	}{
		{"plain", nil},
		{"uid", []Rule{UID(os.Geteuid())}},
		{"program", []Rule{Program(exe)}},
		{"names", []Rule{User(user), Group(group)}},
		{"all", []Rule{UID(os.Geteuid()), GID(os.Getegid()), InGroup(os.Getegid()), User(user), Group(group),
			SameUser(), Program(exe), Label("*")}},
	}
	for _, clients := range []int{1, 8, 64} {
		for _, v := range variants {
			b.Run(v.name+"/clients="+strconv.Itoa(clients), func(b *testing.B) {
				benchCycle(b, clients, v.rules)
			})
		}
	}
}

func benchCycle(b *testing.B, clients int, rules []Rule) {
	path := filepath.Join(benchDir(b), "s")
	var ln net.Listener
	var err error
	if rules == nil {
		ln, err = net.Listen("unix", path)
	} else {
		ln, err = Listen("unix", path, rules...)
	}
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				var buf [1]byte
				if _, err := c.Read(buf[:]); err == nil {
					c.Write(buf[:])
				}
				c.Close()
			}()
		}
	}()
	var wg sync.WaitGroup
	per := b.N / clients
	b.ReportAllocs()
	b.ResetTimer()
	for i := range clients {
		n := per
		if i == 0 {
			n += b.N % clients
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [1]byte
			for range n {
				c, err := net.Dial("unix", path)
				if err != nil {
					b.Error(err)
					return
				}
				c.Write(buf[:])
				if _, err := c.Read(buf[:]); err != nil {
					b.Error("no reply:", err)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
	ln.Close()
	<-done
}

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
			var p Peer
			p.PID = pid
			readProcess(fd, attrProgram, &p, readOptions{})
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
	b.Run("verify-uid", func(b *testing.B) {
		v := newVerifier([]Rule{UID(os.Geteuid())})
		for b.Loop() {
			if _, rej := v.verify(uc); rej != nil {
				b.Fatal(rej)
			}
		}
	})
}

// BenchmarkOpenConns holds 10,000 connections open and reports the heap
// each one costs, for a plain *net.UnixConn and for a *SecureConn.
func BenchmarkOpenConns(b *testing.B) {
	const n = 10000
	for _, secure := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "secure"}[secure]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				path := filepath.Join(benchDir(b), "s")
				var ln net.Listener
				var err error
				if secure {
					ln, err = Listen("unix", path, UID(os.Geteuid()))
				} else {
					ln, err = net.Listen("unix", path)
				}
				if err != nil {
					b.Fatal(err)
				}
				clients := make([]net.Conn, 0, n)
				servers := make([]net.Conn, 0, n)
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b.StartTimer()
				for range n {
					c, err := net.Dial("unix", path)
					if err != nil {
						b.Skip("cannot hold 10,000 connections:", err)
					}
					clients = append(clients, c)
					s, err := ln.Accept()
					if err != nil {
						b.Fatal(err)
					}
					servers = append(servers, s)
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n/2, "heapB/conn")
				for i := range clients {
					clients[i].Close()
					servers[i].Close()
				}
				ln.Close()
				b.StartTimer()
			}
		})
	}
}

func benchDir(b *testing.B) string {
	dir, err := os.MkdirTemp("", "snb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
