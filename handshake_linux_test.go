package secnet

import "testing"

func TestMapUp(t *testing.T) {
	m := "         0     100000      65536\n     65536       1000          1\n"
	for _, tc := range []struct {
		id, want int
		ok       bool
	}{
		{0, 100000, true}, {1000, 101000, true}, {65535, 165535, true},
		{65536, 1000, true}, {65537, 0, false},
	} {
		got, ok := mapUp(m, tc.id)
		if got != tc.want || ok != tc.ok {
			t.Errorf("mapUp(%d) = %d, %v; want %d, %v", tc.id, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := mapUp("0 0 4294967295\n", 4321); got != 4321 || !ok {
		t.Errorf("initial namespace: %d, %v", got, ok)
	}
}
