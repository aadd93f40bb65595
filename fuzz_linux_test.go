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
