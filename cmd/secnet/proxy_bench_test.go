package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkProxy compares a stream and a connection round trip through
// secnet proxy with the same done on the upstream socket directly, and
// through socat (when it is installed) as a reference for a plain proxy.
// "proxy" logs only warnings; "proxy-info" logs at the default level, an
// "allowed" line with the client's identity for every connection.
//
//	go test -run XXX -bench Proxy ./cmd/secnet
func BenchmarkProxy(b *testing.B) {
	for _, via := range []string{"direct", "proxy", "proxy-info", "socat"} {
		b.Run("stream/"+via, func(b *testing.B) {
			up := sinkUpstream(b)
			sock, pid := viaProxy(b, via, up)
			c, err := net.Dial("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			defer reportProxyStats(b, pid)()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*net.UnixConn).CloseWrite()
			io.Copy(io.Discard, c) // the sink closes when it has read everything
			b.StopTimer()
			c.Close()
		})
		b.Run("connect/"+via, func(b *testing.B) {
			_, up := echoUpstream(b)
			sock, pid := viaProxy(b, via, up)
			one := make([]byte, 1)
			defer reportProxyStats(b, pid)()
			b.ResetTimer()
			for range b.N {
				c, err := net.Dial("unix", sock)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// viaProxy returns the socket to connect to for reaching up via a
// proxy: none ("direct"), secnet proxy or socat; and the pid of secnet
// proxy.
func viaProxy(b *testing.B, via, up string) (string, int) {
	switch via {
	case "proxy", "proxy-info":
		p, sock := benchProxy(b, up, strings.TrimPrefix(via, "proxy-"))
		return sock, p.cmd.Process.Pid
	case "socat":
		path, err := exec.LookPath("socat")
		if err != nil {
			b.Skip("socat is not installed")
		}
		listen := filepath.Join(sockDir(b), "socat.sock")
		cmd := exec.Command(path, "UNIX-LISTEN:"+listen+",fork", "UNIX-CONNECT:"+up)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitForSocket(b, listen, func() bool { return true })
		return listen, 0
	}
	return up, 0
}

// reportProxyStats reports, when it is called at the end of a benchmark,
// the CPU time and the context switches of the proxy process pid (0:
// none) per operation since it was called: figures the other processes
// of a busy machine disturb much less than the wall-clock time.
func reportProxyStats(b *testing.B, pid int) func() {
	if pid == 0 {
		return func() {}
	}
	cpu0, sw0 := procStats(pid)
	return func() {
		cpu1, sw1 := procStats(pid)
		if cpu1 >= cpu0 && cpu0 > 0 {
			b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "proxy-cpu-ns/op")
			b.ReportMetric(float64(sw1-sw0)/float64(b.N), "proxy-ctxsw/op")
		}
	}
}

// procStats sums the CPU time (ns, /proc/PID/task/*/schedstat) and the
// context switches (voluntary and not) of the threads of process pid.
func procStats(pid int) (cpuNs, switches int64) {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*")
	for _, task := range tasks {
		if b, err := os.ReadFile(task + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				cpuNs += n
			}
		}
		b, _ := os.ReadFile(task + "/status")
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				switches += n
			}
		}
	}
	return cpuNs, switches
}

// waitForSocket waits, while alive reports true, until a connection to
// path succeeds: the file appears at bind, before listen.
func waitForSocket(b *testing.B, path string, alive func() bool) {
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		if !alive() || i > 4000 {
			b.Fatalf("%s did not accept", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// benchProxy runs a proxy in front of up that logs at level ("proxy":
// only warnings).
func benchProxy(b *testing.B, up, level string) (*proc, string) {
	if level == "proxy" {
		level = "warn"
	}
	listen := filepath.Join(sockDir(b), "p.sock")
	pol := filepath.Join(b.TempDir(), "policy.toml")
	os.WriteFile(pol, []byte(uidPolicy(os.Getuid())), 0644)
	p := start(b, "proxy", "--listen", listen, "--upstream", up, "--policy", pol, "--log-format", "json", "--log-level", level)
	waitForSocket(b, listen, p.running)
	return p, listen
}

// sinkUpstream reads each connection to the end and closes it.
func sinkUpstream(b *testing.B) string {
	path := filepath.Join(sockDir(b), "sink"+strconv.Itoa(b.N)+".sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 1<<20)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return path
}
