package secnet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file parses the subset of TOML 1.0 that policy files use: comments,
// [table] and [[array of tables]] headers, bare keys, basic ("...") and
// literal ('...') strings, decimal integers, booleans, arrays (across lines,
// trailing comma allowed) and one-line inline tables. Every file it accepts
// is valid TOML with the same meaning; valid TOML outside the subset
// (dotted or quoted keys, floats, dates, multi-line strings, hexadecimal
// integers) is refused with an error that names the construct. Every value
// keeps its line, so that errors found later name it.

// tomlKind is the type of a TOML value.
type tomlKind uint8

const (
	kindString tomlKind = iota + 1
	kindInt
	kindBool
	kindArray
	kindTable
)

func (k tomlKind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindInt:
		return "an integer"
	case kindBool:
		return "a boolean"
	case kindArray:
		return "an array"
	case kindTable:
		return "a table"
	}
	return "nothing"
}

// tomlValue is a parsed value and the line it starts on.
type tomlValue struct {
	kind  tomlKind
	line  int
	str   string
	num   int64
	flag  bool
	items []*tomlValue // kindArray
	table *tomlTable   // kindTable
	// headers marks an array of tables made by [[header]] lines, the only
	// kind of array a later header may append to.
	headers bool
}

// tomlTable is a table: its keys in the order they appear.
type tomlTable struct {
	keys   []string
	values map[string]*tomlValue
	// explicit marks a table defined by its own [header]; a table made
	// only as the parent of another header may get its header later.
	explicit bool
	// inline marks a {...} table, which TOML closes where it ends.
	inline bool
}

func newTOMLTable() *tomlTable {
	return &tomlTable{values: make(map[string]*tomlValue)}
}

func (t *tomlTable) set(key string, v *tomlValue) {
	t.keys = append(t.keys, key)
	t.values[key] = v
}

// maxTOMLDepth bounds the nesting of arrays, inline tables and header
// paths, so that a hostile file cannot exhaust the stack.
const maxTOMLDepth = 32

type tomlParser struct {
	src     string
	pos     int
	line    int
	root    *tomlTable
	cur     *tomlTable // the table that key = value lines go into
	curPath string     // its dotted path, for errors
	depth   int
}

// parseTOML parses src into its root table. Errors are *PolicyError.
func parseTOML(src string) (*tomlTable, error) {
	p := &tomlParser{src: src, line: 1, root: newTOMLTable()}
	p.cur = p.root
	if !utf8.ValidString(src) {
		for i := 0; i < len(src); {
			r, n := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, &PolicyError{Line: 1 + strings.Count(src[:i], "\n"), Err: errors.New("the file is not valid UTF-8")}
			}
			i += n
		}
	}
	for {
		p.skipSpace()
		if p.eof() {
			return p.root, nil
		}
		var path string // the key or header on the line, for errors
		switch p.src[p.pos] {
		case '\n', '\r', '#':
		case '[':
			if err := p.header(); err != nil {
				return nil, err
			}
			path = p.curPath
		default:
			key, err := p.key(p.curPath)
			if err != nil {
				return nil, err
			}
			path = joinKey(p.curPath, key)
			if err := p.keyValue(p.cur, key, path); err != nil {
				return nil, err
			}
		}
		if err := p.endOfLine(path); err != nil {
			return nil, err
		}
	}
}

func (p *tomlParser) eof() bool { return p.pos >= len(p.src) }

func (p *tomlParser) errorf(key, format string, args ...any) error {
	return &PolicyError{Line: p.line, Key: key, Err: fmt.Errorf(format, args...)}
}

// skipSpace skips spaces and tabs.
func (p *tomlParser) skipSpace() {
	for !p.eof() && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

// skipComment skips a comment up to, not including, the end of the line.
func (p *tomlParser) skipComment() error {
	if p.eof() || p.src[p.pos] != '#' {
		return nil
	}
	for !p.eof() && p.src[p.pos] != '\n' {
		c := p.src[p.pos]
		if isControl(c) && c != '\r' {
			return p.errorf("", "control character %q in a comment", c)
		}
		p.pos++
	}
	return nil
}

// newline consumes "\n" or "\r\n" and reports whether it did.
func (p *tomlParser) newline() bool {
	switch {
	case strings.HasPrefix(p.src[p.pos:], "\n"):
		p.pos++
	case strings.HasPrefix(p.src[p.pos:], "\r\n"):
		p.pos += 2
	default:
		return false
	}
	p.line++
	return true
}

// endOfLine consumes the rest of a line after a header or a key/value:
// spaces, a comment, and the newline (or the end of the file). key names
// what the line defined, for errors.
func (p *tomlParser) endOfLine(key string) error {
	p.skipSpace()
	if err := p.skipComment(); err != nil {
		return err
	}
	if p.eof() || p.newline() {
		return nil
	}
	return p.errorf(key, "unexpected %s after the end of the line's content (one key = value or [header] per line)", p.describeHere())
}

// skipBlank skips spaces, newlines and comments, as allowed inside arrays.
func (p *tomlParser) skipBlank() error {
	for {
		p.skipSpace()
		if err := p.skipComment(); err != nil {
			return err
		}
		if p.eof() || !p.newline() {
			return nil
		}
	}
}

// describeHere names what is at the current position, for errors.
func (p *tomlParser) describeHere() string {
	if p.eof() {
		return "end of file"
	}
	r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
	if r == '\n' || r == '\r' {
		return "end of line"
	}
	return strconv.QuoteRune(r)
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func isControl(c byte) bool { return c < 0x20 && c != '\t' || c == 0x7f }

// key reads a bare key. parent is the path of the table, for errors.
func (p *tomlParser) key(parent string) (string, error) {
	start := p.pos
	for !p.eof() && isBareKeyChar(p.src[p.pos]) {
		p.pos++
	}
	if p.pos > start {
		return p.src[start:p.pos], nil
	}
	if !p.eof() && (p.src[p.pos] == '"' || p.src[p.pos] == '\'') {
		return "", p.errorf(parent, "quoted keys are not supported in a policy (keys are plain words such as uid or program)")
	}
	return "", p.errorf(parent, "expected a key, found %s", p.describeHere())
}

// keyValue reads "= value" after key and stores it in t.
func (p *tomlParser) keyValue(t *tomlTable, key, path string) error {
	p.skipSpace()
	if !p.eof() && p.src[p.pos] == '.' {
		return p.errorf(path, "dotted keys are not supported in a policy: use a [table] header or an inline table")
	}
	if p.eof() || p.src[p.pos] != '=' {
		return p.errorf(path, "expected '=' after the key, found %s", p.describeHere())
	}
	p.pos++
	p.skipSpace()
	line := p.line
	v, err := p.value(path)
	if err != nil {
		return err
	}
	if _, dup := t.values[key]; dup {
		return &PolicyError{Line: line, Key: path, Err: errors.New("the key is defined twice")}
	}
	t.set(key, v)
	return nil
}

// header reads a [table] or [[array of tables]] header and makes the
// table it names the current one.
func (p *tomlParser) header() error {
	line := p.line
	p.pos++ // '['
	array := !p.eof() && p.src[p.pos] == '['
	if array {
		p.pos++
	}
	var path []string
	for {
		p.skipSpace()
		k, err := p.key(strings.Join(path, "."))
		if err != nil {
			return err
		}
		path = append(path, k)
		if len(path) > maxTOMLDepth {
			return p.errorf(strings.Join(path, "."), "tables are nested more than %d deep", maxTOMLDepth)
		}
		p.skipSpace()
		if p.eof() || p.src[p.pos] != '.' {
			break
		}
		p.pos++
	}
	name := strings.Join(path, ".")
	closing := "]"
	if array {
		closing = "]]"
	}
	if !strings.HasPrefix(p.src[p.pos:], closing) {
		return p.errorf(name, "expected %q to close the header, found %s", closing, p.describeHere())
	}
	p.pos += len(closing)

	t := p.root
	for i, k := range path[:len(path)-1] {
		v := t.values[k]
		switch {
		case v == nil:
			nt := newTOMLTable()
			t.set(k, &tomlValue{kind: kindTable, line: line, table: nt})
			t = nt
		case v.kind == kindTable && !v.table.inline:
			t = v.table
		case v.kind == kindArray && v.headers:
			t = v.items[len(v.items)-1].table
		default:
			return &PolicyError{Line: line, Key: name, Err: fmt.Errorf("%s is already defined on line %d as %s and cannot be extended by a header",
				strings.Join(path[:i+1], "."), v.line, v.kind)}
		}
	}
	last := path[len(path)-1]
	v := t.values[last]
	nt := newTOMLTable()
	nt.explicit = true
	switch {
	case array && v == nil:
		t.set(last, &tomlValue{kind: kindArray, line: line, headers: true,
			items: []*tomlValue{{kind: kindTable, line: line, table: nt}}})
	case array && v.kind == kindArray && v.headers:
		v.items = append(v.items, &tomlValue{kind: kindTable, line: line, table: nt})
	case !array && v == nil:
		t.set(last, &tomlValue{kind: kindTable, line: line, table: nt})
	case !array && v.kind == kindTable && !v.table.explicit && !v.table.inline:
		// The table was made as the parent of an earlier header.
		v.table.explicit = true
		nt = v.table
	case !array && v.kind == kindTable:
		return &PolicyError{Line: line, Key: name, Err: fmt.Errorf("table [%s] is already defined on line %d", name, v.line)}
	default:
		return &PolicyError{Line: line, Key: name, Err: fmt.Errorf("%s is already defined on line %d as %s", name, v.line, v.kind)}
	}
	p.cur, p.curPath = nt, name
	return nil
}

// value reads one value; path names its key, for errors.
func (p *tomlParser) value(path string) (*tomlValue, error) {
	if p.eof() {
		return nil, p.errorf(path, "expected a value, found end of file")
	}
	line := p.line
	switch c := p.src[p.pos]; {
	case c == '"' || c == '\'':
		s, err := p.str(path)
		if err != nil {
			return nil, err
		}
		return &tomlValue{kind: kindString, line: line, str: s}, nil
	case c == '[':
		return p.array(path)
	case c == '{':
		return p.inlineTable(path)
	}
	start := p.pos
	for !p.eof() && (isBareKeyChar(p.src[p.pos]) || strings.IndexByte("+.:", p.src[p.pos]) >= 0) {
		p.pos++
	}
	word := p.src[start:p.pos]
	switch word {
	case "true", "false":
		return &tomlValue{kind: kindBool, line: line, flag: word == "true"}, nil
	case "":
		return nil, p.errorf(path, "expected a value, found %s", p.describeHere())
	}
	n, err := parseTOMLInt(word)
	if err != nil {
		return nil, p.errorf(path, "%w", err)
	}
	return &tomlValue{kind: kindInt, line: line, num: n}, nil
}

// parseTOMLInt parses a TOML decimal integer: an optional sign, digits
// with single underscores between them, no leading zero.
func parseTOMLInt(word string) (int64, error) {
	digits := strings.TrimLeft(word, "+-")
	lower := strings.ToLower(word)
	switch {
	case len(word)-len(digits) > 1 || digits == "":
	case strings.HasPrefix(digits, "0x") || strings.HasPrefix(digits, "0o") || strings.HasPrefix(digits, "0b"):
		return 0, fmt.Errorf("%s: hexadecimal, octal and binary integers are not supported in a policy: write the number in decimal", word)
	case strings.ContainsAny(digits, ".eE") && digits[0] >= '0' && digits[0] <= '9' || strings.HasSuffix(lower, "inf") || strings.HasSuffix(lower, "nan"):
		return 0, fmt.Errorf("%s: floating-point numbers are not supported in a policy", word)
	case strings.ContainsAny(digits, ":-") && digits[0] >= '0' && digits[0] <= '9':
		return 0, fmt.Errorf("%s: dates and times are not supported in a policy", word)
	default:
		valid := digits[0] != '_' && digits[len(digits)-1] != '_' && !strings.Contains(digits, "__") &&
			(digits[0] != '0' || len(digits) == 1)
		for i := 0; valid && i < len(digits); i++ {
			valid = digits[i] == '_' || digits[i] >= '0' && digits[i] <= '9'
		}
		if valid {
			n, err := strconv.ParseInt(strings.ReplaceAll(word, "_", ""), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: integer out of range", word)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("invalid value %s: a value is a \"string\", an integer, true or false, an [array] or an {inline table}", strconv.Quote(word))
}

// str reads a basic or literal one-line string.
func (p *tomlParser) str(path string) (string, error) {
	q := p.src[p.pos]
	if strings.HasPrefix(p.src[p.pos:], strings.Repeat(string(q), 3)) {
		return "", p.errorf(path, "multi-line strings are not supported in a policy")
	}
	p.pos++
	var b strings.Builder
	for {
		if p.eof() || p.src[p.pos] == '\n' || strings.HasPrefix(p.src[p.pos:], "\r\n") {
			return "", p.errorf(path, "unterminated string")
		}
		c := p.src[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String(), nil
		case isControl(c):
			return "", p.errorf(path, "control character %q in a string (write it as an escape such as \\t)", c)
		case c == '\\' && q == '"':
			r, err := p.escape(path)
			if err != nil {
				return "", err
			}
			b.WriteRune(r)
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
}

// escape reads an escape sequence of a basic string.
func (p *tomlParser) escape(path string) (rune, error) {
	if p.pos+1 >= len(p.src) {
		return 0, p.errorf(path, "unterminated string")
	}
	c := p.src[p.pos+1]
	p.pos += 2
	switch c {
	case 'b':
		return '\b', nil
	case 't':
		return '\t', nil
	case 'n':
		return '\n', nil
	case 'f':
		return '\f', nil
	case 'r':
		return '\r', nil
	case '"':
		return '"', nil
	case '\\':
		return '\\', nil
	case 'u', 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if p.pos+n > len(p.src) {
			return 0, p.errorf(path, "short \\%c escape", c)
		}
		hex := p.src[p.pos : p.pos+n]
		v, err := strconv.ParseUint(hex, 16, 32)
		r := rune(v)
		if err != nil || strings.ContainsAny(hex, "+-_") || !utf8.ValidRune(r) {
			return 0, p.errorf(path, "invalid escape \\%c%s", c, hex)
		}
		p.pos += n
		return r, nil
	}
	return 0, p.errorf(path, "invalid escape \\%c in a string (use '...' for a string without escapes)", c)
}

// array reads [v, v, ...], across lines.
func (p *tomlParser) array(path string) (*tomlValue, error) {
	if p.depth++; p.depth > maxTOMLDepth {
		return nil, p.errorf(path, "values are nested more than %d deep", maxTOMLDepth)
	}
	defer func() { p.depth-- }()
	v := &tomlValue{kind: kindArray, line: p.line}
	p.pos++ // '['
	for {
		if err := p.skipBlank(); err != nil {
			return nil, err
		}
		if !p.eof() && p.src[p.pos] == ']' {
			p.pos++
			return v, nil
		}
		item, err := p.value(path)
		if err != nil {
			return nil, err
		}
		v.items = append(v.items, item)
		if err := p.skipBlank(); err != nil {
			return nil, err
		}
		switch {
		case p.eof():
			return nil, &PolicyError{Line: v.line, Key: path, Err: errors.New("unterminated array: missing ']'")}
		case p.src[p.pos] == ',':
			p.pos++
		case p.src[p.pos] != ']':
			return nil, p.errorf(path, "expected ',' or ']' in an array, found %s", p.describeHere())
		}
	}
}

// inlineTable reads {k = v, ...}, which TOML 1.0 keeps on one line.
func (p *tomlParser) inlineTable(path string) (*tomlValue, error) {
	if p.depth++; p.depth > maxTOMLDepth {
		return nil, p.errorf(path, "values are nested more than %d deep", maxTOMLDepth)
	}
	defer func() { p.depth-- }()
	t := newTOMLTable()
	t.inline = true
	v := &tomlValue{kind: kindTable, line: p.line, table: t}
	p.pos++ // '{'
	p.skipSpace()
	if !p.eof() && p.src[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		key, err := p.key(path)
		if err != nil {
			if p.eof() || p.src[p.pos] == '\n' || p.src[p.pos] == '\r' {
				return nil, p.errorf(path, "an inline table {...} must end on the line it starts on (no trailing comma)")
			}
			return nil, err
		}
		if err := p.keyValue(t, key, joinKey(path, key)); err != nil {
			return nil, err
		}
		p.skipSpace()
		switch {
		case !p.eof() && p.src[p.pos] == ',':
			p.pos++
		case !p.eof() && p.src[p.pos] == '}':
			p.pos++
			return v, nil
		case p.eof() || p.src[p.pos] == '\n' || p.src[p.pos] == '\r':
			return nil, p.errorf(path, "an inline table {...} must end on the line it starts on")
		default:
			return nil, p.errorf(path, "expected ',' or '}' in an inline table, found %s", p.describeHere())
		}
	}
}

func joinKey(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}
