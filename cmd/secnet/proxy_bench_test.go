package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkProxy compares a stream and a connection round trip through
// secnet proxy with the same done on the upstream socket directly, and
// through socat (when it is installed) as a reference for a plain proxy.
//
//	go test -run XXX -bench Proxy ./cmd/secnet
func BenchmarkProxy(b *testing.B) {
	for _, via := range []string{"direct", "proxy", "socat"} {
		b.Run("stream/"+via, func(b *testing.B) {
			up := sinkUpstream(b)
			sock := viaProxy(b, via, up)
			c, err := net.Dial("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
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
			sock := viaProxy(b, via, up)
			one := make([]byte, 1)
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
// proxy: none ("direct"), secnet proxy or socat.
func viaProxy(b *testing.B, via, up string) string {
	switch via {
	case "proxy":
		return benchProxy(b, up)
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
		waitForFile(b, listen, func() bool { return true })
		return listen
	}
	return up
}

// waitForFile waits until path exists while alive reports true.
func waitForFile(b *testing.B, path string, alive func() bool) {
	for i := 0; ; i++ {
		if _, err := os.Lstat(path); err == nil {
			return
		}
		if !alive() || i > 4000 {
			b.Fatalf("%s did not appear", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// benchProxy runs a proxy that logs only warnings in front of up.
func benchProxy(b *testing.B, up string) string {
	listen := filepath.Join(sockDir(b), "p.sock")
	pol := filepath.Join(b.TempDir(), "policy.toml")
	os.WriteFile(pol, []byte(uidPolicy(os.Getuid())), 0644)
	p := start(b, "proxy", "--listen", listen, "--upstream", up, "--policy", pol, "--log-format", "json", "--log-level", "warn")
	waitForFile(b, listen, p.running)
	return listen
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
