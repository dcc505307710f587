package playbook

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
)

// helper is a function that expressions may call and expr lacks. Each is one entry here: its
// name, its signatures for the type check at load, what it does, and, for the helpers that
// take patterns, how one pattern is compiled, so a pattern written as a literal is checked and
// compiled when the playbook loads rather than on the first alert.
type helper struct {
	name  string
	doc   string // how to call it, for the reference and the tests
	fn    func(args ...any) (any, error)
	types []any
	// patterns is the argument holding a pattern or a list of them; nil for helpers that take
	// none.
	patterns *patternArg
}

// patternArg is a helper's argument that holds patterns: which it is, and how one pattern is
// checked and compiled.
type patternArg struct {
	fn      string // the helper's name, for messages
	index   int
	compile func(string) (any, error)
}

var (
	networks = &patternArg{fn: "inCIDR", index: 1, compile: compileNetwork}
	globs    = &patternArg{fn: "globMatch", index: 0, compile: compileGlob}
	domains  = &patternArg{fn: "domainMatch", index: 0, compile: compileDomain}
)

var helpers = []helper{
	{
		name: "inCIDR",
		doc:  `inCIDR(ip, "10.0.0.0/8") or inCIDR(ip, ["10.0.0.0/8", "fd00::/8"]): ip is inside one of the networks (a bare address is a network of one)`,
		fn:   inCIDR,
		types: []any{
			new(func(string, string) bool),
			new(func(string, []any) bool),
			new(func(string, []string) bool),
		},
		patterns: networks,
	},
	{
		name: "globMatch",
		doc:  `globMatch("C:\Users\*\AppData\**", path): * and ? stay within one path element (/ or \), ** crosses them, [a-z] and [!a-z] are classes; case matters; a list of patterns matches when any does`,
		fn:   globMatch,
		types: []any{
			new(func(string, string) bool),
			new(func([]any, string) bool),
			new(func([]string, string) bool),
		},
		patterns: globs,
	},
	{
		name: "domainMatch",
		doc:  `domainMatch("*.example.com", host): host is example.com's subdomain at any depth (not example.com itself); without "*." the names must be equal; case and a final dot are ignored; a list of patterns matches when any does`,
		fn:   domainMatch,
		types: []any{
			new(func(string, string) bool),
			new(func([]any, string) bool),
			new(func([]string, string) bool),
		},
		patterns: domains,
	},
	{
		name: "dig",
		doc:  `dig(alert, "a.b.0.c") or dig(alert, "a.b.c", default) or dig(alert, ["a.b", "c"]): the value at the path, through objects and lists (a number picks a list's item), or the default (nil unless given) where anything on the way is missing, null or of another kind`,
		fn:   dig,
		types: []any{
			new(func(any, string) any),
			new(func(any, string, any) any),
			new(func(any, []any) any),
			new(func(any, []any, any) any),
		},
	},
}

var helperOptions = func() []expr.Option {
	opts := make([]expr.Option, len(helpers))
	for i, h := range helpers {
		opts[i] = expr.Function(h.name, h.fn, h.types...)
	}
	return opts
}()

func helperNamed(name string) *helper {
	for i := range helpers {
		if helpers[i].name == name {
			return &helpers[i]
		}
	}
	return nil
}

// patterns holds compiled patterns by helper and text: every literal of every loaded playbook,
// and the first patternCacheMax that arrive at run time (from vars or the alert), so a run
// compiles a pattern once and memory stays bounded whatever alerts hold.
var (
	patterns       sync.Map // helper name + "\x00" + pattern → compiled
	patternsCached atomic.Int64
)

const patternCacheMax = 4096

func (h *patternArg) compiled(pattern string, atLoad bool) (any, error) {
	key := h.fn + "\x00" + pattern
	if c, ok := patterns.Load(key); ok {
		return c, nil
	}
	c, err := h.compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.fn, err)
	}
	if atLoad || patternsCached.Add(1) <= patternCacheMax {
		patterns.Store(key, c)
	}
	return c, nil
}

// each calls fn with every compiled pattern of a helper's pattern argument, a string or a
// list of strings, until fn says it matched.
func (h *patternArg) each(arg any, fn func(c any) bool) (bool, error) {
	var list []any
	switch t := arg.(type) {
	case string:
		c, err := h.compiled(t, false)
		if err != nil {
			return false, err
		}
		return fn(c), nil
	case []any:
		list = t
	case []string:
		for _, s := range t {
			list = append(list, s)
		}
	default:
		return false, fmt.Errorf("%s: argument %d must be a string or a list of strings, got %s", h.fn, h.index+1, kindOf(arg))
	}
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return false, fmt.Errorf("%s: argument %d: item %d must be a string, got %s", h.fn, h.index+1, i, kindOf(e))
		}
		c, err := h.compiled(s, false)
		if err != nil {
			return false, err
		}
		if fn(c) {
			return true, nil
		}
	}
	return false, nil
}

// checkLiterals compiles, once, the patterns written as literals in helper calls, and reports
// the first bad one at its place in the source.
func checkLiterals(prog interface{ Node() ast.Node }, src string) error {
	v := &literalVisitor{}
	node := prog.Node()
	ast.Walk(&node, v)
	if v.err == nil {
		return nil
	}
	return v.err.Bind(file.NewSource(src))
}

type literalVisitor struct{ err *file.Error }

func (v *literalVisitor) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok || v.err != nil {
		return
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok {
		return
	}
	h := helperNamed(id.Value)
	if h == nil || h.patterns == nil || h.patterns.index >= len(call.Arguments) {
		return
	}
	arg := call.Arguments[h.patterns.index]
	for _, lit := range literalStrings(arg) {
		if _, err := h.patterns.compiled(lit, true); err != nil {
			v.err = &file.Error{Location: arg.Location(), Message: err.Error()}
			return
		}
	}
}

// literalStrings returns the strings of a string literal or of a list literal's string items;
// nothing for anything computed at run time.
func literalStrings(n ast.Node) []string {
	switch t := n.(type) {
	case *ast.StringNode:
		return []string{t.Value}
	case *ast.ArrayNode:
		var out []string
		for _, e := range t.Nodes {
			if s, ok := e.(*ast.StringNode); ok {
				out = append(out, s.Value)
			}
		}
		return out
	case *ast.ConstantNode: // the optimizer folds constant lists
		switch c := t.Value.(type) {
		case string:
			return []string{c}
		case []any:
			var out []string
			for _, e := range c {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
			return out
		case []string:
			return c
		}
	}
	return nil
}

// inCIDR(ip, networks) reports whether ip lies in one of the networks.
func inCIDR(args ...any) (any, error) {
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("inCIDR: the address must be a string, got %s", kindOf(args[0]))
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return nil, fmt.Errorf("inCIDR: %q is not an IP address", s)
	}
	addr = addr.Unmap().WithZone("")
	return networks.each(args[1], func(c any) bool { return c.(netip.Prefix).Contains(addr) })
}

func compileNetwork(s string) (any, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return nil, fmt.Errorf("%q is not a network such as 10.0.0.0/8 or an IP address", s)
}

// globMatch(patterns, s) reports whether s matches one of the glob patterns.
func globMatch(args ...any) (any, error) {
	s, ok := args[1].(string)
	if !ok {
		return nil, fmt.Errorf("globMatch: the text to match must be a string, got %s", kindOf(args[1]))
	}
	return globs.each(args[0], func(c any) bool { return c.(*regexp.Regexp).MatchString(s) })
}

// compileGlob turns a glob into an anchored regular expression. There is no escape character,
// so that Windows paths can be written as they are: [*] matches a star.
func compileGlob(g string) (any, error) {
	const sep = `/\\`
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(g); {
		switch c := g[i]; c {
		case '*':
			if strings.HasPrefix(g[i:], "**") {
				i += 2
				if i < len(g) && (g[i] == '/' || g[i] == '\\') {
					b.WriteString(`(?:.*[` + sep + `])?`) // "a/**/b" matches a/b too
					i++
				} else {
					b.WriteString(`.*`)
				}
				continue
			}
			b.WriteString(`[^` + sep + `]*`)
			i++
		case '?':
			b.WriteString(`[^` + sep + `]`)
			i++
		case '[':
			end := classEnd(g, i)
			if end < 0 {
				return nil, fmt.Errorf("pattern %q: %q at %d is never closed by %q", g, "[", i, "]")
			}
			body := g[i+1 : end]
			b.WriteString("[")
			if body != "" && (body[0] == '!' || body[0] == '^') {
				b.WriteString("^")
				body = body[1:]
			}
			for _, r := range body {
				if r == '-' {
					b.WriteRune(r)
				} else {
					b.WriteString(regexp.QuoteMeta(string(r)))
				}
			}
			b.WriteString("]")
			i = end + 1
		default:
			r, n := utf8.DecodeRuneInString(g[i:])
			b.WriteString(regexp.QuoteMeta(string(r)))
			i += n
		}
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %v", g, err)
	}
	return re, nil
}

// classEnd finds the "]" closing the class opened at g[i]; a "]" first in the class (after
// any "!" or "^") is a member, as in path.Match.
func classEnd(g string, i int) int {
	j := i + 1
	if j < len(g) && (g[j] == '!' || g[j] == '^') {
		j++
	}
	if j < len(g) && g[j] == ']' {
		j++
	}
	if k := strings.IndexByte(g[j:], ']'); k >= 0 {
		return j + k
	}
	return -1
}

// domainPattern is a compiled domainMatch pattern: a name, or "*." and the name whose
// subdomains match, or "*" alone for every name.
type domainPattern struct {
	name string
	sub  bool
}

func (d domainPattern) match(host string) bool {
	switch {
	case d.name == "":
		return host != ""
	case d.sub:
		return len(host) > len(d.name) && strings.HasSuffix(host, d.name) && host[len(host)-len(d.name)-1] == '.'
	}
	return host == d.name
}

func normalHost(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// domainMatch(patterns, host) reports whether host matches one of the domain patterns.
func domainMatch(args ...any) (any, error) {
	s, ok := args[1].(string)
	if !ok {
		return nil, fmt.Errorf("domainMatch: the host must be a string, got %s", kindOf(args[1]))
	}
	host := normalHost(s)
	return domains.each(args[0], func(c any) bool { return c.(domainPattern).match(host) })
}

func compileDomain(p string) (any, error) {
	if p == "*" {
		return domainPattern{}, nil
	}
	d := domainPattern{name: normalHost(p)}
	if rest, ok := strings.CutPrefix(d.name, "*."); ok {
		d = domainPattern{name: rest, sub: true}
	}
	switch {
	case d.name == "":
		return nil, fmt.Errorf("pattern %q has no name", p)
	case strings.Contains(d.name, "*"):
		return nil, fmt.Errorf("pattern %q: %q may only stand as the whole first label, as in *.example.com", p, "*")
	case strings.Contains(d.name, ".."), strings.HasPrefix(d.name, "."):
		return nil, fmt.Errorf("pattern %q has an empty label", p)
	case strings.ContainsFunc(d.name, func(r rune) bool { return r <= ' ' || r == '/' || r == '@' || r == ':' }):
		return nil, fmt.Errorf("pattern %q is not a domain name", p)
	}
	return d, nil
}

// dig(v, path[, default]) looks the path up in v without ever failing.
func dig(args ...any) (any, error) {
	var def any
	if len(args) == 3 {
		def = args[2]
	}
	var keys []any
	switch p := args[1].(type) {
	case string:
		if p == "" {
			break
		}
		for _, k := range strings.Split(p, ".") {
			keys = append(keys, k)
		}
	case []any:
		keys = p
	default:
		return nil, fmt.Errorf("dig: the path must be a string or a list, got %s", kindOf(args[1]))
	}
	v := args[0]
	for _, k := range keys {
		var ok bool
		if v, ok = digOne(v, k); !ok {
			return def, nil
		}
	}
	if v == nil {
		return def, nil
	}
	return v, nil
}

func digOne(v, key any) (any, bool) {
	name, isName := key.(string)
	if !isName {
		n, ok := wholeNumber(key)
		if !ok {
			return nil, false
		}
		name = strconv.Itoa(n)
	}
	switch t := v.(type) {
	case map[string]any:
		x, ok := t[name]
		return x, ok
	case map[string]string:
		x, ok := t[name]
		return x, ok
	case StepState:
		switch name {
		case "status":
			return t.Status, true
		case "output":
			return t.Output, true
		case "error":
			return t.Error, true
		}
		return nil, false
	case []any:
		i, err := strconv.Atoi(name)
		if err != nil || i < 0 || i >= len(t) {
			return nil, false
		}
		return t[i], true
	}
	rv := reflect.ValueOf(v)
	switch {
	case !rv.IsValid():
		return nil, false
	case rv.Kind() == reflect.Map && rv.Type().Key().Kind() == reflect.String:
		x := rv.MapIndex(reflect.ValueOf(name).Convert(rv.Type().Key()))
		if !x.IsValid() {
			return nil, false
		}
		return x.Interface(), true
	case rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array:
		i, err := strconv.Atoi(name)
		if err != nil || i < 0 || i >= rv.Len() {
			return nil, false
		}
		return rv.Index(i).Interface(), true
	}
	return nil, false
}

func wholeNumber(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		if n == float64(int(n)) {
			return int(n), true
		}
	}
	return 0, false
}

// clock is the run's instant for now() and since(); the zero time is the wall clock.
type clock time.Time

func (c clock) now() time.Time {
	if t := time.Time(c); !t.IsZero() {
		return t
	}
	return time.Now()
}

// since(t) is how long ago t was, from an RFC 3339 string or a time.
func (c clock) since(v any) (time.Duration, error) {
	switch t := v.(type) {
	case time.Time:
		return c.now().Sub(t), nil
	case string:
		at, err := time.Parse(time.RFC3339, t)
		if err != nil {
			return 0, fmt.Errorf("since: %q is not an RFC 3339 time such as 2026-11-22T10:00:00Z", t)
		}
		return c.now().Sub(at), nil
	}
	return 0, errors.New("since: want an RFC 3339 string or a time, got " + kindOf(v))
}
