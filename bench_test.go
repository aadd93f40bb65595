package secnet

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
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
			b.Run("rules="+v.name+"/clients="+strconv.Itoa(clients), func(b *testing.B) {
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
	done := serveEcho(ln)
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

// serveEcho accepts from ln until it is closed: each connection gets back
// the byte it sends, and is closed. The channel is closed when the accept
// loop has ended.
func serveEcho(ln net.Listener) <-chan struct{} {
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
	return done
}

// BenchmarkOpenConns holds 10,000 connections open and reports the heap
// each one costs, for a plain *net.UnixConn and for a *SecureConn.
func BenchmarkOpenConns(b *testing.B) {
	n := 10000
	// Both ends are in this process: two fds per connection.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(2*n+256) {
		want := lim
		want.Cur = uint64(2*n + 256)
		want.Max = max(want.Max, want.Cur)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			n = int(lim.Cur-256) / 2
			b.Logf("RLIMIT_NOFILE is %d: holding %d connections", lim.Cur, n)
		} else {
			b.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
		}
	}
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
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n)/2, "heapB/conn")
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
