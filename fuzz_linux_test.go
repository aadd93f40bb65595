package secnet

import (
	"fmt"
	"strings"
	"testing"
)

// statLine builds a /proc/<pid>/stat line as the kernel writes it (see
// do_task_stat in fs/proc/array.c): the command name in parentheses,
// unescaped, then 50 numeric fields, the start time being field 22.
func statLine(pid int, comm string, start uint64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d (%s) S", pid, comm)
	for field := 4; field <= 52; field++ {
		if field == 22 {
			fmt.Fprintf(&b, " %d", start)
		} else {
			fmt.Fprintf(&b, " %d", field*7)
		}
	}
	b.WriteByte('\n')
	return b.String()
}

// FuzzParseStartTime feeds parseStartTime, which reads /proc/<pid>/stat
// of a peer, with a command name the peer chooses (prctl PR_SET_NAME and
// the executable's name accept any byte but NUL, parentheses, spaces and
// newlines included): the start time must come out unchanged. The raw
// input is also parsed as a whole stat file, which must never panic.
func FuzzParseStartTime(f *testing.F) {
	for _, seed := range []struct {
		comm  string
		start uint64
	}{
		{"sshd", 12345},
		{"a) S 1 2 3 (", 1},
		{"))))", 18446744073709551615},
		{"with space", 0},
		{"new\nline", 42},
		{"", 7},
		{"(", 99},
	} {
		f.Add(seed.comm, seed.start)
	}
	f.Fuzz(func(t *testing.T, comm string, start uint64) {
		parseStartTime(comm) // arbitrary text: an error or a value, never a panic
		if strings.IndexByte(comm, 0) >= 0 || len(comm) > 64 {
			return // the kernel's names have no NUL and at most 15 bytes
		}
		got, err := parseStartTime(statLine(4242, comm, start))
		if err != nil || got != start {
			t.Fatalf("parseStartTime with name %q = %d, %v; want %d", comm, got, err, start)
		}
	})
}

// statusText builds a /proc/<pid>/status text with the given effective
// ids and supplementary groups, the other ids different.
func statusText(uid, gid uint32, groups []uint32) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Name:\tpeer\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t1\n")
	fmt.Fprintf(&b, "Uid:\t%d\t%d\t%d\t%d\n", uid+1, uid, uid+2, uid+3)
	fmt.Fprintf(&b, "Gid:\t%d\t%d\t%d\t%d\n", gid+1, gid, gid+2, gid+3)
	b.WriteString("FDSize:\t64\nGroups:\t")
	for _, g := range groups {
		fmt.Fprintf(&b, "%d ", g)
	}
	b.WriteString("\nNStgid:\t42\nVmPeak:\t  1000 kB\n")
	return b.String()
}

// FuzzParseStatus feeds parseStatus, which reads /proc/<pid>/status for
// PeerOfProcess: arbitrary text must give an error or ids, never a panic,
// and a well-formed status must give back the effective ids and groups.
func FuzzParseStatus(f *testing.F) {
	f.Add(statusText(1000, 1000, []uint32{4, 27}), uint32(1000), uint32(100), []byte{1, 2, 3})
	f.Add("Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n", uint32(0), uint32(0), []byte{})
	f.Add("Uid: 1 2\nGroups: x\n", uint32(65534), uint32(65534), []byte{255})
	f.Fuzz(func(t *testing.T, raw string, uid, gid uint32, groupBytes []byte) {
		var p Peer
		parseStatus("status", []byte(raw), &p) // never a panic
		if uid > 1<<31 || gid > 1<<31 {
			return // ids are 32-bit; keep uid+3 from wrapping
		}
		groups := make([]uint32, len(groupBytes))
		for i, g := range groupBytes {
			groups[i] = uint32(g) * 1000
		}
		p = Peer{}
		if err := parseStatus("status", []byte(statusText(uid, gid, groups)), &p); err != nil {
			t.Fatalf("well-formed status: %v", err)
		}
		if p.UID != int(uid) || p.GID != int(gid) || len(p.Groups) != len(groups) {
			t.Fatalf("got uid %d gid %d groups %v; want %d %d %v", p.UID, p.GID, p.Groups, uid, gid, groups)
		}
		for i := range groups {
			if p.Groups[i] != int(groups[i]) {
				t.Fatalf("groups %v, want %v", p.Groups, groups)
			}
		}
	})
}

// TestParseStatusManyGroups: a process may hold up to 65536 supplementary
// groups, a Groups line far longer than bufio.Scanner's default limit.
func TestParseStatusManyGroups(t *testing.T) {
	groups := make([]uint32, 65536)
	for i := range groups {
		groups[i] = uint32(i) + 1000000
	}
	var p Peer
	if err := parseStatus("status", []byte(statusText(5, 6, groups)), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Groups) != len(groups) || p.UID != 5 || p.GID != 6 {
		t.Fatalf("uid %d gid %d, %d groups; want 5, 6, %d", p.UID, p.GID, len(p.Groups), len(groups))
	}
}
