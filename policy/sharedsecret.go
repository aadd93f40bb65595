package policy

import (
	"path/filepath"
	"strings"

	"github.com/secnet/secnet"
)

// sharedSecretRule builds the rule of a sharedsecret key: the path of a
// key file, or an array of them for key rotation. The files are read when
// the policy is decoded, with secnet.ReadSecretFile's checks (a regular
// file that its group and others can neither read nor write).
func sharedSecretRule(v value) (secnet.Rule, error) {
	if v.key != "rule.sharedsecret" {
		return secnet.Rule{}, v.errorf("sharedsecret is a handshake with the client: it belongs in a [[rule]] table itself, " +
			"not inside anyof, allof or not nor in another table (a client cannot know whether it will be challenged)")
	}
	paths, err := v.strings()
	if err != nil {
		return secnet.Rule{}, err
	}
	keys := make([][]byte, len(paths))
	for i, p := range paths {
		if !filepath.IsAbs(p) {
			return secnet.Rule{}, v.item(i).errorf("sharedsecret %q: the key file's path must be absolute", p)
		}
		k, err := secnet.ReadSecretFile(p)
		if err != nil {
			return secnet.Rule{}, v.item(i).errorf("%s", strings.TrimPrefix(err.Error(), "secnet: "))
		}
		keys[i] = k
	}
	return secnet.SharedSecrets(keys...), nil
}
