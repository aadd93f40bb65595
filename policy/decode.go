package policy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Decoding happens in two passes over the file, both by go-toml:
//
//  1. toml.Unmarshal into a map decides what the file means: it refuses
//     anything that is not TOML (syntax, a key defined twice, a table
//     defined twice, ...) and gives the values.
//  2. go-toml's parser walks the same bytes again and records, for every
//     key, table and array element, the line it starts on. Nothing here
//     decides meaning: the values all come from pass 1; the lines only
//     point errors at the right place, and order the keys of a table as
//     the file does.

// document is a decoded policy file: its values, and where each is.
type document struct {
	root  map[string]any
	pos   map[string]position   // of keys and tables, by path (see child and index)
	items map[string][]position // of the elements of each array, by the array's path
}

// position is where a key, table or value starts.
type position struct {
	line   int
	offset int
}

// child and index build the path of a value inside the document, the key
// of document.pos: keys are quoted, so no key can look like another path.
func child(path, key string) string { return path + "." + strconv.Quote(key) }
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// decode decodes src, which is at most maxSize bytes.
func decode(src []byte) (*document, error) {
	var root map[string]any
	if err := toml.Unmarshal(src, &root); err != nil {
		return nil, syntaxError(src, err)
	}
	d := &document{root: root, pos: make(map[string]position), items: make(map[string][]position)}
	if err := d.index(src); err != nil {
		// go-toml accepted the file in pass 1; its parser should too.
		return nil, &Error{Line: 1, Err: fmt.Errorf("TOML parser: %w", err)}
	}
	return d, nil
}

// syntaxError turns an error of toml.Unmarshal into an *Error.
func syntaxError(src []byte, err error) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return &Error{Line: 1, Err: err}
	}
	line, _ := de.Position()
	key := strings.Join(de.Key(), ".")
	if key != "" {
		// go-toml names the key relative to the table it is in: add the
		// path of the table header above it, unless the header is the
		// problem.
		if h := headerAbove(src, line); h != "" && h != key {
			key = h + "." + key
		}
	}
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	return &Error{Line: max(line, 1), Key: key, Err: errors.New(msg)}
}

// headerAbove returns the dotted key of the last table header that starts
// before line (or on it), as far as go-toml's parser reads the file.
func headerAbove(src []byte, line int) string {
	var p unstable.Parser
	p.Reset(src)
	lines := newLines(src)
	header := ""
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != unstable.Table && e.Kind != unstable.ArrayTable {
			continue
		}
		var keys []string
		first := -1
		for it := e.Key(); it.Next(); {
			k := it.Node()
			if first < 0 {
				first = int(k.Raw.Offset)
			}
			keys = append(keys, string(k.Data))
		}
		if first < 0 || lines.line(first) > line {
			break
		}
		header = strings.Join(keys, ".")
	}
	return header
}

// lines maps byte offsets of a file to line numbers.
type lines []int // offsets of the newlines

func newLines(src []byte) lines {
	var nl lines
	for i, c := range src {
		if c == '\n' {
			nl = append(nl, i)
		}
	}
	return nl
}

func (l lines) line(offset int) int {
	return sort.SearchInts(l, offset) + 1
}

// indexer records the position of every key, table and value.
type indexer struct {
	d     *document
	lines lines
	// arrays counts the tables of each array of tables ([[x]]) so far.
	arrays map[string]int
}

func (d *document) index(src []byte) error {
	ix := &indexer{d: d, lines: newLines(src), arrays: make(map[string]int)}
	var p unstable.Parser
	p.Reset(src)
	table := "" // path of the table the key/value pairs go to
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			ix.keyValue(table, e)
		case unstable.Table, unstable.ArrayTable:
			table = ix.header(e)
		}
	}
	return p.Error()
}

// record notes that path starts at the range r, unless it is known.
func (ix *indexer) record(path string, r unstable.Range) {
	if _, ok := ix.d.pos[path]; ok || r.Length == 0 {
		return
	}
	ix.d.pos[path] = ix.position(r)
}

func (ix *indexer) position(r unstable.Range) position {
	return position{line: ix.lines.line(int(r.Offset)), offset: int(r.Offset)}
}

// header handles [a.b] and [[a.b]] and returns the path of the table.
func (ix *indexer) header(e *unstable.Node) string {
	var keys []*unstable.Node
	for it := e.Key(); it.Next(); {
		keys = append(keys, it.Node())
	}
	path := ""
	for i, k := range keys {
		path = child(path, string(k.Data))
		ix.record(path, k.Raw)
		n, isArray := ix.arrays[path]
		if i == len(keys)-1 && e.Kind == unstable.ArrayTable {
			ix.arrays[path] = n + 1
			path = index(path, n)
			ix.record(path, k.Raw)
		} else if isArray {
			// [a.b] and [[a.b]] below [[a]] go to a's last table.
			path = index(path, n-1)
		}
	}
	return path
}

// keyValue handles key = value (and dotted.key = value) in table.
func (ix *indexer) keyValue(table string, e *unstable.Node) {
	path := table
	for it := e.Key(); it.Next(); {
		k := it.Node()
		path = child(path, string(k.Data))
		ix.record(path, k.Raw)
	}
	ix.value(path, e.Value())
}

// value records the elements of arrays and the keys of inline tables.
func (ix *indexer) value(path string, v *unstable.Node) {
	switch v.Kind {
	case unstable.Array:
		var items []position
		for it := v.Children(); it.Next(); {
			item := it.Node()
			if item.Kind == unstable.Comment {
				continue
			}
			// A nested array has no range of its own: it gets the
			// line of the element before it, or of the key.
			p := position{}
			if item.Raw.Length > 0 {
				p = ix.position(item.Raw)
			}
			if item.Kind == unstable.Array || item.Kind == unstable.InlineTable {
				ix.value(index(path, len(items)), item)
			}
			items = append(items, p)
		}
		ix.d.items[path] = items
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				ix.keyValue(path, kv)
			}
		}
	}
}

// value is a value of the document, with its key and line for errors.
type value struct {
	v    any    // as go-toml decodes it: string, int64, bool, []any, map[string]any, ...
	key  string // dotted key for errors, e.g. "rule.anyof.uid"
	path string // key of document.pos
	line int
	doc  *document
}

// at returns the value of the document at a path below v.
func (v value) at(key, path string, x any) value {
	line := v.line
	if p, ok := v.doc.pos[path]; ok {
		line = p.line
	}
	return value{v: x, key: key, path: path, line: line, doc: v.doc}
}

func (v value) errorf(format string, args ...any) error {
	return &Error{Line: v.line, Key: v.key, Err: fmt.Errorf(format, args...)}
}

// item returns element i of an array value, or v itself if it is not an
// array (a single value given where a list is accepted).
func (v value) item(i int) value {
	a, ok := v.v.([]any)
	if !ok {
		return v
	}
	it := v.at(v.key, index(v.path, i), a[i])
	if items := v.doc.items[v.path]; i < len(items) && items[i].line > 0 {
		it.line = items[i].line
	}
	return it
}

// table is a TOML table of the document.
type table struct {
	value
	m map[string]any
}

// asTable returns v as a table, or an error naming what it is instead.
func (v value) asTable(want string) (table, error) {
	m, ok := v.v.(map[string]any)
	if !ok {
		return table{}, v.errorf("want %s, got %s", want, typeName(v.v))
	}
	return table{value: v, m: m}, nil
}

// keys returns the keys of the table in the order of the file.
func (t table) keys() []string {
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		pa, oka := t.doc.pos[child(t.path, a)]
		pb, okb := t.doc.pos[child(t.path, b)]
		if oka && okb && pa.offset != pb.offset {
			return pa.offset - pb.offset
		}
		return strings.Compare(a, b)
	})
	return keys
}

// get returns the value of key in t.
func (t table) get(key string) value {
	k := key
	if t.key != "" {
		k = t.key + "." + key
	}
	return t.at(k, child(t.path, key), t.m[key])
}

// typeName names the TOML type of a decoded value, for errors.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a floating-point number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	default:
		return "a date or time"
	}
}
