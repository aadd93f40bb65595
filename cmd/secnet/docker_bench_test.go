package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkDockerAPI measures requests per second of GET /_ping and GET
// /containers/json against a real dockerd: directly, through the HTTP
// proxy with contrib/policies/docker.toml ("proxy"), and through the
// byte-level proxy with the same connection rule ("bytes"), over
// kept-alive connections: one client, and eight at once. It reports the
// CPU time the proxy and dockerd spend per request. It needs root and
// dockerd (see TestDockerThroughProxy).
//
//	go test -run '^$' -bench DockerAPI ./cmd/secnet
func BenchmarkDockerAPI(b *testing.B) {
	d := startDockerd(b)
	proxied, proxyPid := benchDockerProxy(b, d.sock, "../../contrib/policies/docker.toml")
	// The byte-level proxy with the same connection rule, for comparison.
	connOnly := filepath.Join(b.TempDir(), "conn.toml")
	os.WriteFile(connOnly, []byte("[[rule]]\nanyof = [{ uid = 0 }, { group = \"docker\" }]\n"), 0o644)
	bytesProxied, bytesPid := benchDockerProxy(b, d.sock, connOnly)
	for _, path := range []string{"/_ping", "/v1.41/containers/json"} {
		for _, via := range []string{"direct", "proxy", "bytes"} {
			sock, pid := d.sock, 0
			switch via {
			case "proxy":
				sock, pid = proxied, proxyPid
			case "bytes":
				sock, pid = bytesProxied, bytesPid
			}
			client := &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", sock)
				},
				MaxIdleConnsPerHost: 64,
			}}
			get := func(b *testing.B) {
				res, err := client.Get("http://docker" + path)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("GET %s: %s", path, res.Status)
				}
			}
			report := func(b *testing.B, proxyCPU, daemonCPU time.Duration) {
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				b.ReportMetric(float64(daemonCPU.Microseconds())/float64(b.N), "dockerd-µs/req")
				if pid != 0 {
					b.ReportMetric(float64(proxyCPU.Microseconds())/float64(b.N), "proxy-µs/req")
				}
			}
			b.Run(path[1:]+"/"+via+"/1", func(b *testing.B) {
				p0, d0 := cpuTime(pid), cpuTime(d.cmd.Process.Pid)
				for range b.N {
					get(b)
				}
				report(b, cpuTime(pid)-p0, cpuTime(d.cmd.Process.Pid)-d0)
			})
			b.Run(path[1:]+"/"+via+"/8", func(b *testing.B) {
				p0, d0 := cpuTime(pid), cpuTime(d.cmd.Process.Pid)
				b.SetParallelism(4) // 8 clients on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						get(b)
					}
				})
				report(b, cpuTime(pid)-p0, cpuTime(d.cmd.Process.Pid)-d0)
			})
		}
	}
}

// benchDockerProxy runs secnet proxy with the policy in front of
// upstream, logging at the default level (with routes, a line per
// request: the audit is part of the cost) to a file.
func benchDockerProxy(b *testing.B, upstream, policy string) (string, int) {
	listen := filepath.Join(sockDir(b), "p.sock")
	logf, err := os.Create(filepath.Join(b.TempDir(), "proxy.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(secnetBin, "proxy", "--listen", listen, "--upstream", upstream,
		"--policy", policy, "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	waitForSocket(b, listen, func() bool { return cmd.ProcessState == nil })
	return listen, cmd.Process.Pid
}

// cpuTime returns the CPU time (user and system) process pid has used.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100
}
