package secnet_test

import (
	"fmt"
	"strings"

	"github.com/secnet/secnet"
)

func ExampleParsePolicy() {
	pol, err := secnet.ParsePolicy(strings.NewReader(`
# Root, or a member of group 4 or 27.
[[rule]]
anyof = [{ uid = 0 }, { ingroup = [4, 27] }]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pol)
	// pol.Rules() go to secnet.Listen, ListenConfig.Listen or a Dialer.

	_, err = secnet.ParsePolicy(strings.NewReader("[[rule]]\nuid = \"root\"\n"))
	fmt.Println(err)
	// Output:
	// anyof(uid(0), ingroup(4, 27))
	// line 2: key rule.uid: want a user id or an array of them, got a string
}
