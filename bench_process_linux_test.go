package secnet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Benchmarks whose clients run in another process, as they do in
// production: the server's CPU time (getrusage of this process) is then
// the server's alone, and the clients do not compete with the server's
// goroutines inside one Go scheduler.

func init() {
	childRoles["cycler"] = runCycler
}

// runCycler is a client process. It starts SECNET_TEST_G goroutines, prints
// "ready" and waits for a line on stdin; then each goroutine makes
// SECNET_TEST_N connection cycles to SECNET_TEST_SOCK (with N 0: until
// stdin closes). In mode "echo" a cycle connects, writes a byte, reads it
// back and closes; in mode "rejected" it connects and reads until the
// server closes the connection. At the end it prints "done", the elapsed
// nanoseconds, the number of cycles, the longest cycle in nanoseconds and
// the CPU time the process used, in nanoseconds.
func runCycler() int {
	sock, mode := os.Getenv("SECNET_TEST_SOCK"), os.Getenv("SECNET_TEST_MODE")
	g, _ := strconv.Atoi(os.Getenv("SECNET_TEST_G"))
	n, _ := strconv.Atoi(os.Getenv("SECNET_TEST_N"))
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return 2
	}
	var stop atomic.Bool
	if n == 0 {
		go func() { io.Copy(io.Discard, in); stop.Store(true) }()
	}
	var (
		wg      sync.WaitGroup
		cycles  atomic.Int64
		longest atomic.Int64
		failed  atomic.Value
	)
	start := time.Now()
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [1]byte
			for i := 0; (n == 0 && !stop.Load()) || i < n; i++ {
				t0 := time.Now()
				c, err := net.Dial("unix", sock)
				if err != nil {
					failed.Store(err)
					return
				}
				if mode == "rejected" {
					c.Read(buf[:])
				} else {
					c.Write(buf[:])
					if _, err := c.Read(buf[:]); err != nil {
						failed.Store(fmt.Errorf("no reply: %w", err))
						c.Close()
						return
					}
				}
				c.Close()
				d := int64(time.Since(t0))
				for {
					l := longest.Load()
					if d <= l || longest.CompareAndSwap(l, d) {
						break
					}
				}
				cycles.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := failed.Load().(error); ok {
		fmt.Println("error:", err)
		return 1
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Println("done", int64(elapsed), cycles.Load(), longest.Load(), ru.Utime.Nano()+ru.Stime.Nano())
	return 0
}

// cyclerResult is what a cycler process reported.
type cyclerResult struct {
	elapsed, longest time.Duration
	cpu              time.Duration // the client process's, from getrusage
	cycles           int64
}

// startCycler starts a client process of sock and waits until it is
// ready; go starts its cycles.
func startCycler(b *testing.B, bin, sock, mode string, goroutines, n int, attr *syscall.SysProcAttr) *peerProc {
	b.Helper()
	p := startPeer(b, bin, "cycler", attr, "SECNET_TEST_SOCK="+sock, "SECNET_TEST_MODE="+mode,
		"SECNET_TEST_G="+itoa(goroutines), "SECNET_TEST_N="+itoa(n))
	if got := p.line(b); got != "ready" {
		b.Fatalf("client process: %q", got)
	}
	return p
}

func (p *peerProc) start(b *testing.B) {
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		b.Fatal(err)
	}
}

// result reads the "done" line of a cycler.
func (p *peerProc) result(b *testing.B) cyclerResult {
	b.Helper()
	line := p.line(b)
	var r cyclerResult
	var elapsed, longest, cpu int64
	if _, err := fmt.Sscanf(line, "done %d %d %d %d", &elapsed, &r.cycles, &longest, &cpu); err != nil {
		b.Fatalf("client process: %q", line)
	}
	r.elapsed, r.longest, r.cpu = time.Duration(elapsed), time.Duration(longest), time.Duration(cpu)
	return r
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleTime is the time the machine's processors have been idle, summed
// over all of them, from /proc/stat (in USER_HZ ticks: 10 ms).
func idleTime(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	var user, nice, system, idle, iowait uint64
	if _, err := fmt.Sscanf(string(data), "cpu %d %d %d %d %d", &user, &nice, &system, &idle, &iowait); err != nil {
		b.Fatalf("/proc/stat: %v", err)
	}
	return time.Duration(idle+iowait) * 10 * time.Millisecond
}

// BenchmarkConnCycleProcess is BenchmarkConnCycle with the clients in
// another process: G goroutines there each connect, write a byte, read
// the reply and close, b.N cycles in all. Besides conns/s it reports the
// server's CPU time per connection (server-µs/conn, from getrusage of
// the server process): what secnet costs beyond the system calls that
// any server makes; the client process's (client-µs/conn), and the time
// the machine's processors were idle (idle-µs/conn, summed over them):
// on a machine the server and the clients share, the three add up to
// the wall time per connection times the number of processors.
func BenchmarkConnCycleProcess(b *testing.B) {
	bin := peerBinary(b)
	variants := []struct {
		name  string
		rules []Rule // nil: plain net.Listener
		lc    ListenConfig
	}{
		{"plain", nil, ListenConfig{}},
		// On one or two processors: inline.
		{"uid", []Rule{UID(os.Geteuid())}, ListenConfig{}},
		// The same through the workers, as on more than two processors.
		{"uid-pipeline", []Rule{UID(os.Geteuid())}, ListenConfig{alwaysPipeline: true}},
		{"program", []Rule{Program(bin)}, ListenConfig{}},
		// The same, verified in Accept as before the pipeline: what the
		// pipeline's handoffs cost.
		{"program-inline", []Rule{Program(bin)}, ListenConfig{neverPipeline: true}},
		// The same through the workers, as on more than two processors.
		{"program-pipeline", []Rule{Program(bin)}, ListenConfig{alwaysPipeline: true}},
	}
	for _, g := range []int{1, 8} {
		for _, v := range variants {
			b.Run("rules="+v.name+"/clients="+strconv.Itoa(g), func(b *testing.B) {
				path := filepath.Join(benchDir(b), "s")
				var ln net.Listener
				var err error
				if v.rules == nil {
					ln, err = net.Listen("unix", path)
				} else {
					ln, err = v.lc.Listen(b.Context(), "unix", path, v.rules...)
				}
				if err != nil {
					b.Fatal(err)
				}
				done := serveEcho(ln)
				defer func() { ln.Close(); <-done }()
				n := (b.N + g - 1) / g
				cl := startCycler(b, bin, path, "echo", g, n, nil)
				cpu := cpuTime(b)
				idle := idleTime(b)
				b.ResetTimer()
				cl.start(b)
				r := cl.result(b)
				b.StopTimer()
				cpu = cpuTime(b) - cpu
				idle = idleTime(b) - idle
				b.ReportMetric(float64(r.cycles)/r.elapsed.Seconds(), "conns/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(r.cycles), "server-µs/conn")
				b.ReportMetric(float64(r.cpu.Microseconds())/float64(r.cycles), "client-µs/conn")
				b.ReportMetric(float64(idle.Microseconds())/float64(r.cycles), "idle-µs/conn")
			})
		}
	}
}

// BenchmarkHeadOfLine measures the connection cycles of an allowed peer
// (in a process of its own, one connection at a time) while the peers of
// another uid keep 8 connections in verification, each of which a rule
// holds for 20 ms before it rejects it. stall=none is the same without
// those peers; workers=1 verifies one connection at a time, as a listener
// that verified inside Accept did. It reports the allowed peer's mean and
// longest cycle: connect, one byte each way, close. (The rule reads only
// the credentials, which a listener on two processors verifies inline:
// the benchmark makes it use the pipeline, whose behaviour it measures.)
func BenchmarkHeadOfLine(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: the stalling peers run as another uid")
	}
	bin := peerBinary(b)
	const slowUID, stall = 4242, 20 * time.Millisecond
	for _, v := range []struct {
		name    string
		stall   bool
		workers int
	}{
		{"stall=none", false, 0},
		{"stall=20ms", true, 0},
		{"stall=20ms/workers=1", true, 1},
	} {
		b.Run(v.name, func(b *testing.B) {
			var stalled atomic.Int64
			slow := leaf("slow", "slow()", attrCred, func(p *Peer) error {
				if p.UID != slowUID {
					return nil
				}
				stalled.Add(1)
				time.Sleep(stall)
				return errors.New("slow peer")
			})
			dir := benchDir(b)
			os.Chmod(dir, 0755) // the stalling peers run as another uid
			path := filepath.Join(dir, "s")
			lc := ListenConfig{Mode: 0666, Workers: v.workers, alwaysPipeline: true}
			ln, err := lc.Listen(b.Context(), "unix", path, slow)
			if err != nil {
				b.Fatal(err)
			}
			done := serveEcho(ln)
			defer func() { ln.Close(); <-done }()
			if v.stall {
				cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: slowUID, Gid: slowUID}}
				sp := startCycler(b, bin, path, "rejected", 8, 0, cred)
				sp.start(b)
				defer sp.stdin.Close()
				for deadline := time.Now().Add(20 * time.Second); stalled.Load() == 0; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatal("the stalling peers made no connection within 20s")
					}
				}
			}
			cl := startCycler(b, bin, path, "echo", 1, b.N, nil)
			b.ResetTimer()
			cl.start(b)
			r := cl.result(b)
			b.StopTimer()
			b.ReportMetric(float64(r.elapsed.Microseconds())/float64(r.cycles), "µs/cycle")
			b.ReportMetric(float64(r.longest.Microseconds())/1000, "max-ms")
		})
	}
}
