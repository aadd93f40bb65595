package secnet

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Handshake returns a rule that talks to the peer: fn runs on the
// connection and passes the peer by returning nil. It is for proof that
// kernel identity cannot give, such as possession of a secret (see
// SharedSecret, the built-in one).
//
// A handshake rule runs only after every other rule passed, so a peer
// that fails a kernel rule is never challenged, and never on the goroutine
// that called Accept. ctx carries the listener's verification deadline;
// the connection's read and write deadline follows it while fn runs and is
// cleared afterwards (fn may set a shorter one). When the listener is
// closed, ctx is cancelled and a blocked read returns. fn must not keep
// ctx or c for use after it returns (the listener reuses the context for
// its next verification, and hands c to Accept). If fn panics, the peer
// is rejected with a *PanicError and the listener goes on. What fn reads is
// consumed: the application sees what the peer sends after it. A non-nil
// error rejects the peer, reported to Rejected under name. Several
// handshake rules run one after the other, in the order given.
//
// Handshake rules are valid only among the rules given to Listen,
// NewListener or Verify directly; inside AnyOf, AllOf or Not they are
// invalid, since a client cannot know whether it will be challenged.
// Rule.Check of a handshake rule fails: there is no connection to talk to.
// A client answers with Dialer.Handshake.
func Handshake(name string, fn func(ctx context.Context, c *SecureConn) error) Rule {
	if name == "" || fn == nil {
		return invalid("handshake", errors.New("Handshake needs a name and a function"))
	}
	return Rule{name: name, desc: name + "()", need: attrCred, hs: fn, check: func(*Peer) error {
		return fmt.Errorf("%s is a handshake rule: it talks to the peer, so it runs only when given to Listen, NewListener or Verify, not against a Peer alone", name)
	}}
}

// errNestedHandshake is why a combinator of a handshake rule is invalid.
func errNestedHandshake(r Rule) error {
	return fmt.Errorf("handshake rule %s cannot be combined with AnyOf, AllOf or Not: "+
		"give it to Listen, NewListener or Verify directly (a client cannot know whether it will be challenged)", r.desc)
}

// defaultHandshakeTimeout bounds a handshake when nothing else does: in
// Verify, and in a Dialer without a context deadline or Timeout. It is the
// listener's default verification deadline.
const defaultHandshakeTimeout = DefaultVerifyTimeout

// handshake runs the handshake rules, in order, on sc, whose peer passed
// every other rule.
func (v *verifier) handshake(ctx context.Context, sc *SecureConn) *RejectError {
	for _, r := range v.hs {
		if err := runHandshake(ctx, sc, r.name, r.hs, false); err != nil {
			// The peer as far as it was read: the rules that settled the
			// verdict early read no more than they needed.
			return &RejectError{Peer: sc.id.load(attrCred), Failures: []RuleError{{Rule: r.name, Err: err}}}
		}
	}
	return nil
}

// skipHandshakes adds the handshake rules to the rules rej says were not
// evaluated: a peer that fails another rule is never challenged.
func (v *verifier) skipHandshakes(rej *RejectError) *RejectError {
	for _, r := range v.hs {
		rej.NotEvaluated = append(rej.NotEvaluated, r.desc)
	}
	return rej
}

// errHandshakeCancelled is the reason a handshake fails when its context
// was cancelled rather than timed out (the listener was closed).
var errHandshakeCancelled = errors.New("verification was cancelled")

// runHandshake runs fn on c with the connection's deadline following ctx,
// and clears the deadline afterwards. client says that this process is
// the client: nothing else shuts c down at the deadline, so what fn was
// doing then is worth saying. name names fn in the *PanicError that a
// panic of fn becomes.
func runHandshake(ctx context.Context, c *SecureConn, name string, fn func(context.Context, *SecureConn) error, client bool) error {
	if ctx.Err() != nil {
		return handshakeContextError(ctx, nil)
	}
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline {
		if err := c.SetDeadline(deadline); err != nil {
			return deadlineError(ctx, "setting", err)
		}
	}
	// A cancelled context (a closed listener) unblocks fn's reads too.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err := callHandshake(ctx, c, name, fn)
	detail := err
	var panicked *PanicError
	if !client && !errors.As(err, &panicked) {
		// At the deadline the listener shuts c down: fn's error (an end
		// of stream) describes that, not the peer. A panic is fn's own,
		// and is kept.
		detail = nil
	}
	if !stop() {
		// ctx ended while fn ran: the deadline may be moved at this very
		// moment, so the connection is not fit to hand on.
		return handshakeContextError(ctx, detail)
	}
	if err != nil {
		// The connection's deadline is ctx's and may pass a moment before
		// ctx notices.
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) && hasDeadline && !time.Now().Before(deadline) {
			return handshakeContextError(ctx, detail)
		}
		return err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return deadlineError(ctx, "clearing", err)
	}
	return nil
}

// callHandshake calls fn, turning a panic into a *PanicError.
func callHandshake(ctx context.Context, c *SecureConn, name string, fn func(context.Context, *SecureConn) error) (err error) {
	returned := false
	defer recoverRule(name, &err, &returned)
	err = fn(ctx, c)
	returned = true
	return err
}

// deadlineError is the error of setting or clearing (what) the
// connection's deadline. It fails when ctx ended a moment before and the
// listener closed the connection (see abortConn): that is the deadline or
// the listener's Close, and is said as such.
func deadlineError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return handshakeContextError(ctx, nil)
	}
	return fmt.Errorf("%s the connection's deadline: %w", what, err)
}

// handshakeContextError says that a handshake ran out of time
// (ErrVerifyTimeout) or was cancelled, and what it was doing then when
// err says.
func handshakeContextError(ctx context.Context, err error) error {
	what := errHandshakeCancelled
	if !errors.Is(ctx.Err(), context.Canceled) {
		what = ErrVerifyTimeout
	}
	if err == nil {
		return fmt.Errorf("%w: the handshake was cut off", what)
	}
	return fmt.Errorf("%w: the handshake was cut off: %w", what, err)
}

// The shared-secret exchange, version 1 (docs/handshake.md has it byte by
// byte). Every message has a fixed size.
const (
	ssVersion    = 1
	ssMinKey     = 16
	ssNonceLen   = 32
	ssChallenge  = 8 + ssNonceLen // magic, version, 3 zero bytes, nonce
	ssAnswer     = 12 + sha256.Size
	ssVerdictLen = 8 // magic, version, code, 2 zero bytes
	ssMACContext = "secnet shared-secret v1 answer\x00"
)

var (
	ssChallengeMagic = [4]byte{'S', 'N', 'H', 'C'}
	ssAnswerMagic    = [4]byte{'S', 'N', 'H', 'A'}
	ssVerdictMagic   = [4]byte{'S', 'N', 'H', 'V'}
)

// Verdict codes, the 6th byte of the verdict.
const (
	ssAccepted  = 0
	ssMalformed = 1 // the answer is not a version-1 answer
	ssWrongMAC  = 2 // no accepted key gives this MAC for this challenge
	ssWrongUID  = 3 // the client answered for a server of another uid
)

// ErrHandshakeRefused is matched (errors.Is) by the error of
// ProveSharedSecret when the server refused the answer.
var ErrHandshakeRefused = errors.New("secnet: the server refused the handshake")

// SharedSecret returns a handshake rule (see Handshake) that passes a
// peer proving that it holds key, which must be at least 16 bytes long
// (make it 32 random bytes). The server sends a fresh random challenge;
// the client answers with an HMAC-SHA256 under key of the challenge and of
// the server's uid as the client sees it, so that an answer obtained by
// relaying the challenge to a legitimate client through a socket of
// another user is refused. The server ends the exchange with its verdict,
// so a refused client gets the reason from Dial. The client's side is
// ProveSharedSecret. docs/handshake.md describes the exchange byte by
// byte, what it proves, and what it does not: a key that another user can
// read proves nothing.
//
// The rule's name is "sharedsecret"; the key never appears in errors or in
// String.
func SharedSecret(key []byte) Rule {
	return SharedSecrets(key)
}

// SharedSecrets is SharedSecret accepting any of keys, for key rotation:
// the server accepts the old and the new key while clients move to the
// new one, then drops the old. Every key must be at least 16 bytes long.
func SharedSecrets(keys ...[]byte) Rule {
	if len(keys) == 0 {
		return invalid("sharedsecret", errors.New("no keys given"))
	}
	own := make([][]byte, len(keys))
	for i, k := range keys {
		if err := checkKey(k); err != nil {
			return invalid("sharedsecret", err)
		}
		own[i] = slices.Clone(k)
	}
	n := "1 key"
	if len(own) > 1 {
		n = strconv.Itoa(len(own)) + " keys"
	}
	r := Handshake("sharedsecret", func(ctx context.Context, c *SecureConn) error {
		return challenge(c, own)
	})
	r.desc = "sharedsecret(" + n + ")"
	return r
}

func checkKey(k []byte) error {
	if len(k) < ssMinKey {
		return fmt.Errorf("the key is %d bytes long; a shared secret needs at least %d (use 32 random bytes)", len(k), ssMinKey)
	}
	return nil
}

// maxSecretFile is the size of the largest key file ReadSecretFile reads.
const maxSecretFile = 64 << 10

// ReadSecretFile reads a key for SharedSecret or ProveSharedSecret from
// the file at path, byte for byte (a trailing newline is part of the key).
// The file must be a regular file that neither its group nor others may
// read or write (mode 0600 or 0400): a key that other users can read
// proves nothing, and one they can write they can choose. It must belong
// to root or to the user this process runs as, since its owner can change
// it. The error says which of these is wrong. The key must be 16 bytes long at least.
func ReadSecretFile(path string) ([]byte, error) {
	fail := func(format string, a ...any) ([]byte, error) {
		return nil, fmt.Errorf("secnet: secret file %q: %s", path, fmt.Sprintf(format, a...))
	}
	// O_NONBLOCK: opening a FIFO named by mistake must not hang.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("secnet: secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secnet: secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file (%s)", fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o066 != 0 {
		return fail("mode %04o lets its group or others read or write it: a key others can read proves nothing (chmod 0600 %s)", perm, path)
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != os.Geteuid() {
		return fail("owned by uid %d: a key file must belong to root or to this process's user (uid %d), since its owner can change the key", uid, os.Geteuid())
	}
	if fi.Size() > maxSecretFile {
		return fail("%d bytes; a key file holds at most %d", fi.Size(), maxSecretFile)
	}
	key, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("secnet: secret file: %w", err)
	}
	if len(key) > maxSecretFile {
		return fail("more than %d bytes", maxSecretFile)
	}
	if err := checkKey(key); err != nil {
		return fail("%v", err)
	}
	return key, nil
}

// ssMAC is the MAC a client answers with.
func ssMAC(key, nonce []byte, serverUID uint32) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ssMACContext))
	m.Write(nonce)
	var uid [4]byte
	binary.BigEndian.PutUint32(uid[:], serverUID)
	m.Write(uid[:])
	return m.Sum(nil)
}

// challenge is the server's side of the exchange.
func challenge(c *SecureConn, keys [][]byte) error {
	var ch [ssChallenge]byte
	copy(ch[:], ssChallengeMagic[:])
	ch[4] = ssVersion
	nonce := ch[8:]
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("making a challenge: %w", err)
	}
	if _, err := c.Write(ch[:]); err != nil {
		return fmt.Errorf("sending the challenge: %w", err)
	}
	var ans [ssAnswer]byte
	if n, err := io.ReadFull(c, ans[:]); err != nil {
		switch {
		case n == 0 && err == io.EOF:
			return errors.New("the client closed the connection without answering the challenge")
		case err == io.ErrUnexpectedEOF:
			return fmt.Errorf("short answer: the client sent %d of %d bytes and closed the connection", n, ssAnswer)
		}
		return fmt.Errorf("reading the answer (%d of %d bytes came): %w", n, ssAnswer, err)
	}
	code, err := checkAnswer(keys, nonce, ans[:], c.server.uids())
	var v [ssVerdictLen]byte
	copy(v[:], ssVerdictMagic[:])
	v[4], v[5] = ssVersion, code
	if _, werr := c.Write(v[:]); werr != nil && err == nil {
		return fmt.Errorf("sending the verdict: %w", werr)
	}
	return err
}

// checkAnswer checks an answer to the challenge nonce against every key,
// in constant time for each, and the server uid the client answered for
// against the uids this server has for its clients.
func checkAnswer(keys [][]byte, nonce, ans []byte, uids []uint32) (byte, error) {
	if [4]byte(ans[:4]) != ssAnswerMagic || ans[4] != ssVersion || ans[5]|ans[6]|ans[7] != 0 {
		return ssMalformed, fmt.Errorf("malformed answer: it begins %q, not a version-%d shared-secret answer", ans[:8], ssVersion)
	}
	seen := binary.BigEndian.Uint32(ans[8:12])
	ok := 0
	for _, k := range keys {
		if hmac.Equal(ssMAC(k, nonce, seen), ans[12:]) {
			ok = 1
		}
	}
	if ok == 0 {
		return ssWrongMAC, errors.New("the answer matches no accepted key (a wrong key, or an answer to another challenge)")
	}
	if !slices.Contains(uids, seen) {
		return ssWrongUID, fmt.Errorf("the answer is for a server of uid %d, as the client sees it, but this listening socket belongs to uid %s: "+
			"the challenge was relayed to the client through a socket of another user, or the client runs in a user namespace that does not map this server's uid",
			seen, orList(uint32Strings(uids)))
	}
	return ssAccepted, nil
}

func uint32Strings(ids []uint32) []string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return s
}

// ProveSharedSecret returns the client's side of SharedSecret, for
// Dialer.Handshake: it answers the server's challenge with key and waits
// for the verdict. A refusal is an error that matches ErrHandshakeRefused
// and says why (a wrong key, a relayed challenge, ...); a server that
// closes the connection instead of sending a challenge refused this
// client before the handshake (a kernel rule failed), or does not require
// a shared secret.
func ProveSharedSecret(key []byte) func(ctx context.Context, c *SecureConn) error {
	key = slices.Clone(key)
	return func(ctx context.Context, c *SecureConn) error {
		if err := checkKey(key); err != nil {
			return fmt.Errorf("secnet: shared secret: %w", err)
		}
		return answer(c, key)
	}
}

// answer is the client's side of the exchange.
func answer(c *SecureConn, key []byte) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("secnet: shared secret: "+format, a...)
	}
	var ch [ssChallenge]byte
	if n, err := io.ReadFull(c, ch[:]); err != nil {
		if n == 0 && err == io.EOF {
			return fail("the server closed the connection without sending a challenge " +
				"(it refused this client before the handshake, or does not require a shared secret)")
		}
		return fail("reading the challenge (%d of %d bytes came): %w", n, ssChallenge, err)
	}
	if [4]byte(ch[:4]) != ssChallengeMagic {
		return fail("the server did not send a shared-secret challenge (it sent %q)", ch[:8])
	}
	if ch[4] != ssVersion {
		return fail("the server speaks version %d of the shared-secret exchange; this client knows version %d", ch[4], ssVersion)
	}
	p := c.id.load(attrCred)
	if p.errs.cred != nil {
		return fail("reading the server's uid: %w", p.errs.cred)
	}
	var ans [ssAnswer]byte
	copy(ans[:], ssAnswerMagic[:])
	ans[4] = ssVersion
	binary.BigEndian.PutUint32(ans[8:12], uint32(p.UID))
	copy(ans[12:], ssMAC(key, ch[8:], uint32(p.UID)))
	if _, err := c.Write(ans[:]); err != nil {
		return fail("sending the answer: %w", err)
	}
	var v [ssVerdictLen]byte
	if n, err := io.ReadFull(c, v[:]); err != nil {
		if n == 0 && err == io.EOF {
			return fail("the server closed the connection without a verdict")
		}
		return fail("reading the verdict (%d of %d bytes came): %w", n, ssVerdictLen, err)
	}
	if [4]byte(v[:4]) != ssVerdictMagic || v[4] != ssVersion {
		return fail("the server sent %q, not a version-%d verdict", v[:], ssVersion)
	}
	switch v[5] {
	case ssAccepted:
		return nil
	case ssMalformed:
		return fmt.Errorf("%w: it found the answer malformed", ErrHandshakeRefused)
	case ssWrongMAC:
		return fmt.Errorf("%w: the answer matches none of its keys (this client's key is not one the server accepts)", ErrHandshakeRefused)
	case ssWrongUID:
		return fmt.Errorf("%w: this client answered for the server it sees, uid %d, and the server that checked the answer expected another uid: "+
			"the socket this client reached relayed the challenge of another server, or this client runs in a user namespace that does not map the server's uid",
			ErrHandshakeRefused, p.UID)
	}
	return fmt.Errorf("%w: verdict code %d", ErrHandshakeRefused, v[5])
}

// serverID is the uid of the process that created a listening socket,
// which its clients see through SO_PEERCRED.
type serverID struct {
	uid   int
	known bool
}

// uids returns the server uids a client may rightly answer for: the uid
// of the listening socket's creator (this process's effective uid when it
// is not known), and that uid as the parent user namespace sees it, for
// clients outside a user namespace this server runs in.
func (s serverID) uids() []uint32 {
	uid := s.uid
	if !s.known {
		uid = os.Geteuid()
	}
	out := []uint32{uint32(uid)}
	if p, ok := parentUID(uid); ok && p != uid {
		out = append(out, uint32(p))
	}
	return out
}
