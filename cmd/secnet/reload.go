package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/secnet/secnet"
	"github.com/secnet/secnet/policy"
)

// policyVersion is one loading of the policy file: what every connection
// accepted while it is in force is checked against.
type policyVersion struct {
	file   string
	digest string // SHA-256 of the file's bytes, in hex
	rules  []secnet.Rule
	router *policy.Router // of the [[route]] tables: the proxy speaks HTTP; or nil
	http   *httpPolicy    // what the HTTP proxy decides requests by
}

// loadPolicyVersion reads the policy file once, and parses and hashes
// those bytes, so that the digest is the digest of the rules in force.
func loadPolicyVersion(path string) (*policyVersion, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pol, err := policy.Parse(bytes.NewReader(b), path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	v := &policyVersion{file: path, digest: hex.EncodeToString(sum[:]), rules: pol.Rules(), router: pol.Router()}
	v.http = &httpPolicy{router: v.router}
	for _, r := range v.rules {
		// A request after a reload is checked against the rules less
		// their handshakes (sharedsecret, the only handshake a policy
		// file has): a handshake talks to the client, which speaks HTTP
		// by then; the key it proved when it connected stands for the
		// connection, as on a byte-level connection.
		if r.Name() != "sharedsecret" {
			v.http.rules = append(v.http.rules, r)
		}
	}
	return v, nil
}

// short is the digest's first 12 digits, enough to tell versions apart in
// the log of each connection.
func (v *policyVersion) short() string { return v.digest[:12] }

// attrs describe the version for a log record.
func (v *policyVersion) attrs() []any {
	rules := make([]string, len(v.rules))
	for i, r := range v.rules {
		rules[i] = r.String()
	}
	attrs := []any{"policy", v.file, "sha256", v.digest, "rule_count", len(v.rules), "rules", rules}
	if v.router != nil {
		attrs = append(attrs, "http_routes", routeNames(v.router))
	}
	return attrs
}

// policyHolder holds the version in force. A connection loads it once,
// when its handling starts, and is checked against that version alone; a
// reload swaps it in one store, so each connection sees the old version
// or the new one, never a mix.
type policyHolder struct {
	cur atomic.Pointer[policyVersion]
}

func (h *policyHolder) load() *policyVersion { return h.cur.Load() }

// reload loads the file again. A file that does not load leaves the
// version in force in place, and the log says why (with file:line for a
// mistake in it).
func (h *policyHolder) reload(log *slog.Logger) {
	old := h.cur.Load()
	v, err := loadPolicyVersion(old.file)
	if err != nil {
		log.Error("reload failed: keeping the policy in force", "err", undouble(err.Error()), "sha256", old.digest)
		return
	}
	h.cur.Store(v)
	log.Info("policy reloaded", append(v.attrs(), "previous_sha256", old.digest, "changed", v.digest != old.digest)...)
}
