package main

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerd is a Docker daemon started for a test on private paths.
type dockerd struct {
	dir  string // holds the socket, data and exec roots, and the log
	sock string
	cli  string // the docker CLI
	cmd  *exec.Cmd
	done chan struct{} // closed when dockerd has exited
}

// startDockerd starts dockerd as the Debian package installs it
// (docker.io), without networking, and stops it by its pid when the test
// ends. The test is skipped, with the reason, where dockerd is missing or
// cannot start.
func startDockerd(t testing.TB) *dockerd {
	t.Helper()
	requireRoot(t)
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		t.Skip("dockerd is not installed (CI installs it: apt-get install docker.io)")
	}
	// The CLI that came with the daemon (Debian's docker.io puts dockerd
	// in /usr/sbin and docker in /usr/bin), where there is one.
	cli := ""
	for _, c := range []string{filepath.Join(filepath.Dir(bin), "docker"), "/usr/bin/docker"} {
		if _, err := os.Stat(c); err == nil {
			cli = c
			break
		}
	}
	if cli == "" {
		if cli, err = exec.LookPath("docker"); err != nil {
			t.Skip("the docker CLI is not installed")
		}
	}
	var log string
	for _, driver := range []string{"overlay2", "vfs"} {
		dir, err := os.MkdirTemp("", "sndk") // short: the socket path
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o755)
		d := &dockerd{dir: dir, sock: filepath.Join(dir, "docker.sock"), cli: cli}
		if d.start(t, bin, driver) {
			return d
		}
		log = d.log()
		d.stop(t)
	}
	t.Skipf("dockerd does not start here; its log ends:\n%s", lastLines(log, 15))
	return nil
}

func (d *dockerd) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// start runs dockerd with the storage driver and waits until it answers;
// it reports false if dockerd exits or does not answer in time.
func (d *dockerd) start(t testing.TB, bin, driver string) bool {
	t.Helper()
	logf, err := os.Create(filepath.Join(d.dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(bin, "--host", "unix://"+d.sock,
		"--data-root", filepath.Join(d.dir, "data"), "--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "docker.pid"),
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver="+driver)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Logf("dockerd: %v", err)
		return false
	}
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return false
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := d.docker(t, d.sock, nil, "", "version"); err == nil {
			t.Cleanup(func() { d.stop(t) })
			return true
		}
	}
	return false
}

// stop ends dockerd by its pid (SIGTERM, then SIGKILL after 20s) and
// removes its files, unmounting what it left mounted.
func (d *dockerd) stop(t testing.TB) {
	if d.done != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			t.Logf("dockerd ignored SIGTERM for 20s; killing it")
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], d.dir+"/") {
				syscall.Unmount(f[4], syscall.MNT_DETACH)
			}
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Logf("removing %s: %v", d.dir, err)
	}
}

// docker runs the docker CLI against the socket sock as cred (nil: the
// test's user) with stdin, and returns its output (stdout and stderr).
// The CLI is killed after a minute: docker attach ignores SIGTERM.
func (d *dockerd) docker(t testing.TB, sock string, cred *syscall.Credential, stdin string, args ...string) (string, error) {
	t.Helper()
	return d.run(t, sock, cred, nil, stdin, args...)
}

// dockerEnv is docker as root with more environment variables.
func (d *dockerd) dockerEnv(t testing.TB, sock string, env []string, args ...string) (string, error) {
	t.Helper()
	return d.run(t, sock, nil, env, "", args...)
}

func (d *dockerd) run(t testing.TB, sock string, cred *syscall.Credential, env []string, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.cli, args...)
	home := filepath.Join(d.dir, "home", "root")
	if cred != nil {
		home = filepath.Join(d.dir, "home", strconv.Itoa(int(cred.Uid)))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	os.MkdirAll(filepath.Dir(home), 0o755)
	os.Mkdir(home, 0o700)
	if cred != nil {
		os.Chown(home, int(cred.Uid), int(cred.Gid))
	}
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_HOST=unix://" + sock, "DOCKER_BUILDKIT=0"}, env...)
	cmd.Dir = d.dir
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("docker %s: %v, %s", strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		err = fmt.Errorf("docker %s: killed after a minute", strings.Join(args, " "))
	}
	return out.String(), err
}

// importBusybox makes the image local/busybox from the host's static
// busybox (Debian's busybox-static), with a link per applet: no registry
// is needed.
func (d *dockerd) importBusybox(t testing.TB) {
	t.Helper()
	const bb = "/bin/busybox"
	f, err := elf.Open(bb)
	if err != nil {
		t.Skipf("no busybox to make an image of (CI installs busybox-static): %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			f.Close()
			t.Skip(bb + " is dynamically linked: install busybox-static")
		}
	}
	f.Close()
	rootfs := filepath.Join(d.dir, "rootfs")
	for _, dir := range []string{"bin", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777)
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			os.Symlink("busybox", filepath.Join(rootfs, "bin", applet))
		}
	}
	cmd := exec.Command("sh", "-c", `tar -C "$1" -c . | "$2" -H "unix://$3" import - local/busybox`, "sh", rootfs, d.cli, d.sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
}

// dockerGroup returns the id of the group docker, which the Debian
// package creates.
func dockerGroup(t testing.TB) int {
	t.Helper()
	g, err := user.LookupGroup("docker")
	if err != nil {
		t.Skipf("no group docker (the docker.io package creates it): %v", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

// TestDockerThroughProxy drives the real docker CLI through the HTTP proxy
// in front of a real dockerd, with contrib/policies/docker.toml: root may
// do everything, members of group docker may only look, others get
// nothing.
func TestDockerThroughProxy(t *testing.T) {
	d := startDockerd(t)
	gid := dockerGroup(t)
	d.importBusybox(t)
	sock, proxy := dockerProxy(t, d.sock)

	root := func(stdin string, args ...string) string {
		t.Helper()
		out, err := d.docker(t, sock, nil, stdin, args...)
		if err != nil {
			t.Fatalf("as root: docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	expect := func(out, want string, args ...string) {
		t.Helper()
		if !strings.Contains(out, want) {
			t.Errorf("docker %s: output %q does not hold %q", strings.Join(args, " "), out, want)
		}
	}
	since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)

	t.Run("root", func(t *testing.T) {
		for _, c := range []struct {
			stdin, want string
			args        []string
		}{
			{"", "API version:      1.41", []string{"version"}},
			{"", "Storage Driver:", []string{"info"}},
			{"", "hello", []string{"run", "--rm", "local/busybox", "echo", "hello"}},
			{"from stdin\n", "from stdin", []string{"run", "-i", "--rm", "local/busybox", "cat"}},
			{"", "", []string{"run", "-d", "--name", "sn1", "local/busybox", "sh", "-c", "echo started; while true; do sleep 1; done"}},
			{"", "exec-ok", []string{"exec", "sn1", "echo", "exec-ok"}},
			{"to exec\n", "to exec", []string{"exec", "-i", "sn1", "cat"}},
			{"", "", []string{"run", "-d", "--name", "sn2", "local/busybox", "sh", "-c", "echo one; sleep 1; echo two"}},
			{"", "one\ntwo\n", []string{"logs", "-f", "sn2"}},
			{"", "sn1", []string{"ps"}},
			{"", "local/busybox", []string{"images"}},
			{"", `"Name": "/sn1"`, []string{"inspect", "sn1"}},
			{"", "sleep", []string{"top", "sn1"}},
			{"", "sn1", []string{"stats", "--no-stream", "sn1"}},
		} {
			expect(root(c.stdin, c.args...), c.want, c.args...)
		}
		events := []string{"events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix()+1, 10), "--filter", "event=create", "--format", "{{.Actor.Attributes.name}} {{.Action}}"}
		expect(root("", events...), "sn1 create", events...)
		// cp both ways, and build.
		host := filepath.Join(d.dir, "cpfile")
		os.WriteFile(host, []byte("copied\n"), 0o644)
		root("", "cp", host, "sn1:/tmp/cpfile")
		expect(root("", "exec", "sn1", "cat", "/tmp/cpfile"), "copied", "exec", "cat")
		back := filepath.Join(d.dir, "cpback")
		root("", "cp", "sn1:/tmp/cpfile", back)
		if b, err := os.ReadFile(back); err != nil || string(b) != "copied\n" {
			t.Errorf("docker cp out of the container: %q, %v", b, err)
		}
		ctxDir := filepath.Join(d.dir, "build")
		os.MkdirAll(ctxDir, 0o755)
		os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM local/busybox\nCOPY f /f\nRUN cat /f /f > /g\n"), 0o644)
		os.WriteFile(filepath.Join(ctxDir, "f"), []byte("built\n"), 0o644)
		root("", "build", "-t", "local/built", ctxDir)
		expect(root("", "run", "--rm", "local/built", "cat", "/g"), "built\nbuilt\n", "run", "local/built")
		// BuildKit: the context and the build go over /session and /grpc,
		// connections upgraded to h2c.
		bkDir := filepath.Join(d.dir, "buildkit")
		os.MkdirAll(bkDir, 0o755)
		os.WriteFile(filepath.Join(bkDir, "Dockerfile"), []byte("FROM local/busybox\nCOPY f /f\nRUN cat /f /f /f > /g\n"), 0o644)
		os.WriteFile(filepath.Join(bkDir, "f"), []byte("buildkit\n"), 0o644)
		if out, err := d.dockerEnv(t, sock, []string{"DOCKER_BUILDKIT=1"}, "build", "--network", "none", "-t", "local/bk", bkDir); err != nil {
			t.Errorf("as root: DOCKER_BUILDKIT=1 docker build: %v\n%s", err, lastLines(out, 10))
		}
		expect(root("", "run", "--rm", "local/bk", "cat", "/g"), "buildkit\nbuildkit\nbuildkit\n", "run", "local/bk")
		root("", "volume", "create", "snvol")
		root("", "volume", "rm", "snvol")
	})

	member := &syscall.Credential{Uid: 4242, Gid: 4242, Groups: []uint32{uint32(gid)}}
	t.Run("docker group", func(t *testing.T) {
		for _, args := range [][]string{
			{"version"}, {"info"}, {"ps", "-a"}, {"images"}, {"inspect", "sn1"}, {"inspect", "local/busybox"},
			{"logs", "sn2"}, {"logs", "-f", "sn2"}, {"top", "sn1"}, {"stats", "--no-stream", "sn1"},
			{"events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix(), 10)},
			{"network", "ls"}, {"volume", "ls"}, {"history", "local/busybox"},
		} {
			if out, err := d.docker(t, sock, member, "", args...); err != nil {
				t.Errorf("as a member of group docker: docker %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		for _, args := range [][]string{
			{"run", "--rm", "local/busybox", "true"}, {"create", "local/busybox"}, {"start", "sn2"},
			{"exec", "sn1", "true"}, {"attach", "sn1"}, {"cp", "sn1:/etc", "-"},
			{"volume", "create", "snvol2"}, {"rm", "-f", "sn1"}, {"rmi", "local/busybox"},
			{"build", "-t", "local/built2", filepath.Join(d.dir, "build")},
		} {
			out, err := d.docker(t, sock, member, "", args...)
			want := "Error response from daemon: secnet: "
			if args[0] == "attach" {
				want = "received 403" // the CLI does not print the body of a refused upgrade
			}
			if err == nil || !strings.Contains(out, want) {
				t.Errorf("as a member of group docker: docker %s: %v, %q; want the proxy's refusal", strings.Join(args, " "), err, out)
			}
		}
		if out := root("", "ps", "-a", "--format", "{{.Names}}"); !strings.Contains(out, "sn1") || !strings.Contains(out, "sn2") {
			t.Errorf("containers after the refused commands: %q", out)
		}
	})

	t.Run("others", func(t *testing.T) {
		outsider := &syscall.Credential{Uid: 4243, Gid: 4243}
		for _, args := range [][]string{{"version"}, {"ps"}, {"run", "--rm", "local/busybox", "true"}} {
			out, err := d.docker(t, sock, outsider, "", args...)
			if err == nil || strings.Contains(out, "Server:") || strings.Contains(out, "local/busybox") {
				t.Errorf("as uid 4243: docker %s: %v, %q; want nothing from the daemon", strings.Join(args, " "), err, out)
			}
		}
		if rec := proxy.waitLog(t, "rejected", 1); rec.peer()["uid"] != float64(4243) {
			t.Errorf("rejection: %v, want uid 4243", rec)
		}
	})
	// The audit: a line per request, with who and which route.
	var create, refused logRecord
	for _, rec := range proxy.logs("request") {
		if rec["method"] == "POST" && rec["path"] == "/v1.41/containers/create" {
			if rec["decision"] == "allowed" && create == nil {
				create = rec
			}
			if rec["decision"] == "refused" && refused == nil {
				refused = rec
			}
		}
	}
	if create == nil || create.peer()["uid"] != float64(0) || create["route"] != "root" || create["status"] != float64(201) {
		t.Errorf("audit of root's POST /containers/create: %v", create)
	}
	if refused == nil || refused.peer()["uid"] != float64(4242) || refused["route"] != "root" || refused["status"] != float64(403) ||
		!strings.Contains(refused["reason"].(string), "uid: peer uid 4242 is not 0") {
		t.Errorf("audit of the member's POST /containers/create: %v", refused)
	}
	root("", "rm", "-f", "sn1", "sn2")
	if t.Failed() {
		t.Logf("dockerd log:\n%s", lastLines(d.log(), 30))
	}
}

// dockerProxy runs secnet proxy with contrib/policies/docker.toml in
// front of upstream, on a socket every user may connect to (the policy
// decides), and returns the socket and the proxy.
func dockerProxy(t testing.TB, upstream string) (string, *proc) {
	t.Helper()
	pol, err := os.ReadFile("../../contrib/policies/docker.toml")
	if err != nil {
		t.Fatal(err)
	}
	p, sock := startProxy(t, upstream, string(pol), "--mode", "0666")
	return sock, p
}
