package secnet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A peer chooses the name of its executable (and of its cgroups, below a
// delegated subtree): a newline there must not split a rejection into
// several log lines, one of which could forge an "accepted" record.
func TestRejectionOfNewlineProgramIsOneLine(t *testing.T) {
	requireLinux(t)
	bin := peerBinary(t)
	evil := filepath.Join(t.TempDir(), "x\nsecnet: accepted peer pid=1 uid=0 program=sshd\n")
	if err := copyExecutable(evil); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(evil), 0755)
	h := listen(t, Program(bin), Cgroup("/nowhere/*"))
	startClient(t, evil, h.path, "hold", nil).line(t)
	rej := h.mustReject(t)
	if rej.Peer.Program != evil {
		t.Fatalf("rejected %q, want the program %q", rej.Peer.Program, evil)
	}
	for what, s := range map[string]string{"RejectError.Error": rej.Error(), "Peer.String": rej.Peer.String()} {
		if strings.ContainsAny(s, "\n\r") {
			t.Errorf("%s spans lines: %s", what, s)
		}
		if !strings.Contains(s, `\nsecnet: accepted`) {
			t.Errorf("%s does not show the program quoted: %s", what, s)
		}
	}
}
