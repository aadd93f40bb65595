package secnet

// The socket file: bound at its real path (addresses, long paths,
// abstract names), errors in words, and an attacker of another uid who
// keeps planting files at the path while the server listens again and
// again.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	childRoles["listen-once"] = runListenOnce
	childRoles["planter"] = runPlanter
}

// runListenOnce listens on SECNET_TEST_SOCK and prints "ok" or the error.
func runListenOnce() int {
	ln, err := Listen("unix", os.Getenv("SECNET_TEST_SOCK"), Anyone())
	if err != nil {
		fmt.Println(err)
		return 0
	}
	ln.Close()
	fmt.Println("ok")
	return 0
}

// An accepted connection's LocalAddr, the client's RemoteAddr and
// http.LocalAddrContextKey name the path given to Listen, as with
// net.Listen, with and without Mode.
func TestSocketAddressIsThePath(t *testing.T) {
	requireLinux(t)
	for _, mode := range []os.FileMode{0, 0600} {
		t.Run(fmt.Sprintf("mode %#o", mode), func(t *testing.T) {
			path := filepath.Join(sockDir(t), "s")
			lc := ListenConfig{Mode: mode}
			ln, err := lc.Listen(context.Background(), "unix", path, UID(os.Getuid()))
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
			})}
			go srv.Serve(ln)
			defer srv.Close()
			var remote string
			client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, "unix", path)
				if err == nil {
					remote = c.RemoteAddr().String()
				}
				return c, err
			}}}
			resp, err := client.Get("http://x/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != path {
				t.Errorf("http.LocalAddrContextKey = %q, want %q", b, path)
			}
			if remote != path {
				t.Errorf("client RemoteAddr = %q, want %q", remote, path)
			}
			if got := ln.Addr().String(); got != path {
				t.Errorf("Addr = %q, want %q", got, path)
			}
		})
	}
}

// A path of 107 bytes is bound and reachable; 108 is refused with the
// limit in the message.
func TestSocketPathLength(t *testing.T) {
	requireLinux(t)
	dir := sockDir(t)
	pad := func(n int) string { return filepath.Join(dir, strings.Repeat("p", n-len(dir)-1)) }
	path := pad(107)
	for _, mode := range []os.FileMode{0, 0600} {
		lc := ListenConfig{Mode: mode}
		ln, err := lc.Listen(context.Background(), "unix", path, UID(os.Getuid()))
		if err != nil {
			t.Fatalf("Listen on a %d-byte path, mode %#o: %v", len(path), mode, err)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("Dial of the %d-byte path: %v", len(path), err)
		}
		c.Close()
		ln.Close()
	}
	_, err := Listen("unix", pad(108), Anyone())
	if err == nil || !strings.Contains(err.Error(), "the limit is 107 bytes") {
		t.Fatalf("Listen on a 108-byte path: %v, want an error naming the limit", err)
	}
	if _, serr := os.Lstat(pad(108)); serr == nil {
		t.Error("a file was left at the 108-byte path")
	}
}

// "\x00name" is an abstract name, as for net.Listen.
func TestAbstractSocketNULForm(t *testing.T) {
	requireLinux(t)
	name := "secnet-test-nul-" + itoa(os.Getpid())
	ln, err := Listen("unix", "\x00"+name, UID(os.Getuid()))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := ln.Addr().String(); got != "@"+name {
		t.Errorf("Addr = %q, want %q", got, "@"+name)
	}
	c, err := net.Dial("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.AcceptSecure()
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
}

// Errors name the path given and say what is wrong in words.
func TestListenErrorsInWords(t *testing.T) {
	requireLinux(t)
	dir := sockDir(t)
	if err := os.Mkdir(filepath.Join(dir, "d"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, want string }{
		{"d", "is a directory, not a socket"},
		{"f", "is a regular file, not a socket"},
		{"l", "is a symbolic link, not a socket"},
		{"missing/s", `the directory "` + dir + `/missing" does not exist`},
	} {
		path := filepath.Join(dir, tc.name)
		for _, mode := range []os.FileMode{0, 0600} {
			lc := ListenConfig{Mode: mode}
			_, err := lc.Listen(context.Background(), "unix", path, Anyone())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Listen(%q) = %v, want an error naming the path and saying %q", path, err, tc.want)
			}
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, "d")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0 {
		t.Errorf("the directory at the path was changed: %v, %v", fi.Mode(), err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "f")); err != nil || fi.Mode().Perm() != 0 {
		t.Errorf("the file behind the symlink was changed: %v, %v", fi.Mode(), err)
	}

	// Permission: a user who may not write the directory.
	requireRoot(t)
	path := filepath.Join(dir, "s")
	p := startPeer(t, peerBinary(t), "listen-once", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}},
		"SECNET_TEST_SOCK="+path)
	got := p.line(t)
	want := fmt.Sprintf(`listen unix %s: permission denied: this process (uid 1) cannot create files in the directory %q`, path, dir)
	if !strings.HasPrefix(got, want) {
		t.Errorf("Listen as uid 1 in a directory of root: %q, want it to start with %q", got, want)
	}
}

// plantReport is what runPlanter prints when its stdin closes.
type plantReport struct {
	Planted    int
	Violations []string
}

// runPlanter is the attacker: in the sticky directory of
// SECNET_TEST_SOCK it keeps planting, at that path, a symlink to a file
// of its own, a dangling symlink, a directory and a stale socket, and
// checks that nobody else removed or changed its files, followed its
// symlinks or connected it to the server's socket. It stops when its
// stdin closes and prints a plantReport.
func runPlanter() int {
	path := os.Getenv("SECNET_TEST_SOCK")
	dir := filepath.Dir(path)
	target, dangle := filepath.Join(dir, "target"), filepath.Join(dir, "dangle")
	if err := os.WriteFile(target, []byte("mine"), 0600); err != nil {
		fmt.Println(err)
		return 2
	}
	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	fmt.Println("ready")
	var rep plantReport
	violation := func(format string, a ...any) { rep.Violations = append(rep.Violations, fmt.Sprintf(format, a...)) }
	for i := 0; ; i++ {
		select {
		case <-stop:
			json.NewEncoder(os.Stdout).Encode(rep)
			return 0
		default:
		}
		kind := i % 4
		var err error
		switch kind {
		case 0:
			err = os.Symlink(target, path)
		case 1:
			err = os.Symlink(dangle, path)
		case 2:
			err = os.Mkdir(path, 0700)
		case 3:
			var l *net.UnixListener
			if l, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"}); err == nil {
				l.SetUnlinkOnClose(false)
				l.Close()
			}
		}
		// Whatever is at the path now, uid 1 must never get through to
		// the server: its socket is 0660 root:adm from the first moment.
		if c, derr := net.Dial("unix", path); derr == nil {
			c.Close()
			violation("uid 1 connected to the socket at the path")
		}
		if err != nil {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		rep.Planted++
		id, err := lstatFileID(path)
		if err != nil {
			if kind != 3 { // a stale socket may be replaced
				violation("my file of kind %d vanished at once: %v", kind, err)
			}
			continue
		}
		time.Sleep(time.Duration(i%7) * 300 * time.Microsecond)
		now, err := lstatFileID(path)
		if kind != 3 && (err != nil || now != id) {
			violation("my file of kind %d was removed or replaced (%v)", kind, err)
		}
		if b, err := os.ReadFile(target); err != nil || string(b) != "mine" {
			violation("the target of my symlink was changed: %q, %v", b, err)
		}
		if fi, err := os.Stat(target); err != nil || fi.Mode() != 0600 || fi.Sys().(*syscall.Stat_t).Uid != 1 {
			violation("the target of my symlink was chmodded or chowned: %v", fi.Mode())
		}
		if _, err := os.Lstat(dangle); err == nil {
			violation("a file appeared at the target of my dangling symlink")
			os.Remove(dangle)
		}
		if err == nil && now == id {
			if kind == 2 {
				syscall.Rmdir(path)
			} else {
				syscall.Unlink(path)
			}
		}
		time.Sleep(time.Duration(i%5) * 200 * time.Microsecond)
	}
}

// A server that listens and closes again and again at a path in a sticky
// world-writable directory, while an attacker of uid 1 keeps planting
// symlinks, directories and stale sockets there: every successful Listen
// leaves the server's socket at the path with the asked mode and owner,
// named by its addresses; a failed one says why; the attacker's files are
// never changed, removed or followed.
func TestSocketFileUnderAttack(t *testing.T) {
	requireLinux(t)
	requireRoot(t)
	dir := filepath.Join(sockDir(t), "sticky")
	if err := os.Mkdir(dir, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil { // 01777, as /tmp
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s")
	attacker := startPeer(t, peerBinary(t), "planter", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1, Gid: 1}},
		"SECNET_TEST_SOCK="+path)
	if got := attacker.line(t); got != "ready" {
		t.Fatalf("attacker: %s", got)
	}
	lc := ListenConfig{Mode: 0660, Owner: "0", Group: "4"}
	listened, failures := 0, map[string]int{}
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
		ln, err := lc.Listen(context.Background(), "unix", path, UID(0))
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "listen unix "+path+": ") || strings.Contains(msg, ".sn") ||
				!(strings.Contains(msg, "not a socket") || strings.Contains(msg, "keeps appearing") ||
					strings.Contains(msg, "another process is listening")) {
				t.Fatalf("Listen failed with an unclear error: %v", err)
			}
			failures[msg[strings.LastIndex(msg, ": ")+2:]]++
			time.Sleep(100 * time.Microsecond)
			continue
		}
		listened++
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0660 || st.Uid != 0 || st.Gid != 4 {
			t.Fatalf("after Listen the path is %v %d:%d, want the server's socket 0660 0:4", fi.Mode(), st.Uid, st.Gid)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.AcceptSecure()
		if err != nil {
			t.Fatal(err)
		}
		if sc.LocalAddr().String() != path || c.RemoteAddr().String() != path || ln.Addr().String() != path {
			t.Fatalf("addresses %v, %v, %v; want %q", sc.LocalAddr(), c.RemoteAddr(), ln.Addr(), path)
		}
		sc.Close()
		c.Close()
		ln.Close()
		// Only root's files are uid 0 here (inode numbers are reused).
		if fi, err := os.Lstat(path); err == nil && fi.Sys().(*syscall.Stat_t).Uid == 0 {
			t.Fatal("Close left the server's socket file in place")
		}
		time.Sleep(time.Duration(i%3) * 300 * time.Microsecond) // the attacker's turn
	}
	attacker.stdin.Close()
	var rep plantReport
	if err := json.Unmarshal([]byte(attacker.line(t)), &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d successful Listens; failures %v; the attacker planted %d files", listened, failures, rep.Planted)
	for _, v := range rep.Violations {
		t.Error("attacker:", v)
	}
	if listened == 0 || rep.Planted < 20 {
		t.Fatalf("the race did not happen: %d Listens, %d files planted", listened, rep.Planted)
	}
}

// Owner without Mode: the file gets net.Listen's mode, 0777 less the
// umask, and the owner, and the umask is left as it was.
func TestSocketFileOwnerWithoutMode(t *testing.T) {
	requireRoot(t)
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	path := filepath.Join(sockDir(t), "s")
	lc := ListenConfig{Owner: "daemon", Group: "adm"}
	ln, err := lc.Listen(context.Background(), "unix", path, Anyone())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o750 || st.Uid != 1 || st.Gid != 4 {
		t.Errorf("socket file %v %d:%d, want socket 0750 owned by daemon:adm (1:4)", fi.Mode(), st.Uid, st.Gid)
	}
	if now := syscall.Umask(0o027); now != 0o027 {
		t.Errorf("umask is %#o after Listen, want 027", now)
	}
}
