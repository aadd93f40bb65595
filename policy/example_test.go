package policy_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/policy"
)

func ExampleParse() {
	pol, err := policy.Parse(strings.NewReader(`
# Root, or a member of group 4 or 27.
[[rule]]
anyof = [{ uid = 0 }, { ingroup = [4, 27] }]
`), "admins.toml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pol)
	// pol.Rules() go to secnet.Listen, ListenConfig.Listen or a Dialer.

	_, err = policy.Parse(strings.NewReader("[[rule]]\nuid = \"root\"\n"), "bad.toml")
	fmt.Println(err)
	// Output:
	// anyof(uid(0), ingroup(4, 27))
	// bad.toml:2: key rule.uid: want a user id or an array of them, got a string
}

func ExampleLoad() {
	pol, err := policy.Load("testdata/policies/root-only.toml")
	if err != nil {
		log.Fatal(err) // e.g. "/etc/myd/policy.toml:7: key rule.user: no user named "bob" exists"
	}
	fmt.Println(pol)
	// A listener that lets in the processes the policy allows:
	//
	//	ln, err := secnet.Listen("unix", "/run/myd.sock", pol.Rules()...)
	var _ []secnet.Rule = pol.Rules()
	// Output:
	// uid(0)
}
