package playbook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/expr-lang/expr/vm/runtime"
)

// scope is what an expression may read beyond the run's environment.
type scope struct {
	item string // the name a foreach step binds its item to; "" outside such a step
}

// program is one compiled expression and its source, which run-time errors quote.
type program struct {
	prog *vm.Program
	src  string
	fast *fastExpr // nil when the VM runs it every time
	// guard, of a condition, is false for alerts it cannot hold for; nil when it has none.
	guard *fieldGuard
}

// compile compiles src against the expression environment and the helper functions, then
// checks the patterns and networks written as literals in helper calls, so a bad one fails at
// load. asBool makes the expression a condition.
func compile(src string, sc scope, asBool bool) (*program, error) {
	return compileFetching(src, sc, asBool, true)
}

// compileFetching is compile, with fetchPatch or (in tests that compare) without.
func compileFetching(src string, sc scope, asBool, fetching bool) (*program, error) {
	opts := append([]expr.Option{expr.Env(exprEnv{}), expr.Patch(outputPatch{})}, helperOptions...)
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	if sc.item != "" {
		opts = append(opts, expr.Patch(itemPatch{sc.item}))
	}
	if fetching {
		// Last: it reads the types the checker gave the tree after the patches above.
		opts = append(opts, expr.Patch(fetchPatch{}))
	}
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, err
	}
	if err := checkLiterals(prog, src); err != nil {
		return nil, err
	}
	out := &program{prog: prog, src: src, fast: compileFast(prog.Node(), asBool)}
	if asBool {
		out.guard = guardOf(prog.Node())
	}
	return out, nil
}

// itemPatch renames a foreach step's item name to exprEnv.Item's, which no expression can
// write, so the name reads the item in that step and nowhere else.
type itemPatch struct{ name string }

func (p itemPatch) Visit(node *ast.Node) {
	if id, ok := (*node).(*ast.IdentifierNode); ok && id.Value == p.name {
		id.Value = itemName
	}
}

// outputPatch makes the first access into a step's output optional: `steps.x.output.y` reads
// nil when step x is absent or left no output, as it did when outputs were always maps, now that
// a foreach step's output is a list. Going further (`.y.z`) through a nil is an error, as it
// is anywhere else.
type outputPatch struct{}

func (outputPatch) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok || m.Optional {
		return
	}
	out, ok := m.Node.(*ast.MemberNode)
	if !ok {
		return
	}
	if name, ok := out.Property.(*ast.StringNode); !ok || name.Value != "output" {
		return
	}
	step, ok := out.Node.(*ast.MemberNode)
	if !ok {
		return
	}
	if root, ok := step.Node.(*ast.IdentifierNode); !ok || root.Value != "steps" {
		return
	}
	m.Optional = true
	ast.Patch(node, &ast.ChainNode{Node: m})
}

// fetchPatch makes a member access with a literal name, `x.name` or `x["name"]`, on a value that
// may be a map[string]any (the alert, vars, anything inside the alert) a call to fetchField.
// expr reads such a member through reflection (runtime.Fetch), which also allocates a copy of
// every value it reads, and every playbook's `when` reads the alert this way for every alert.
// The call goes through exprEnv.Fetch, a field of a function type expr calls without
// reflection (OpCallTyped); a function given with expr.Function would allocate its arguments'
// slice at every run. Optional accesses (`?.`), which expr compiles as jumps, and method calls
// are left alone.
type fetchPatch struct{}

// fetchName is exprEnv.Fetch's name in expressions, which no expression can write.
const fetchName = "fetch field"

func (fetchPatch) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok || m.Optional || m.Method {
		return
	}
	name, ok := m.Property.(*ast.StringNode)
	if !ok || !mayBeObject(m.Node) {
		return
	}
	ast.Patch(node, &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: fetchName},
		Arguments: []ast.Node{m.Node, &ast.StringNode{Value: name.Value}},
	})
}

// mayBeObject says whether n's value, as the checker typed it, may be a map[string]any: a
// map[string]any itself, any, a predicate's item the checker could not type (`.os` in
// `any(alert.endpoints, .os == "linux")`), or an access fetchPatch has just rewritten (not
// typed yet). Anything else keeps expr's member access, and with it the checks at load:
// `steps.x.outptu` on a struct, `$env.name` (whose `$env` the checker leaves untyped).
func mayBeObject(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		return ok && id.Value == fetchName
	case *ast.PointerNode:
		if n.Nature().Type == nil {
			return true
		}
	}
	t := n.Nature().Type
	return t == objectType || t != nil && t.Kind() == reflect.Interface && t.NumMethod() == 0
}

var objectType = reflect.TypeFor[map[string]any]()

// fetchField is `from.name` (exprEnv.Fetch): a map[string]any is indexed directly; anything
// else goes to expr's own runtime.Fetch, so the result, and the error for a value that has no
// such member, are expr's. FuzzFetchPatch holds it to expr's.
func fetchField(from, name any) any {
	if m, ok := from.(map[string]any); ok {
		return m[name.(string)]
	}
	return runtime.Fetch(from, name)
}

// A VM keeps its stack between runs; pooling them saves an allocation per evaluation on the hot
// path while each goroutine still has its own.
var vmPool = sync.Pool{New: func() any { return new(vm.VM) }}

// exprMessage keeps expr's message and position but drops the source snippet it appends on
// further lines: a problem is one line.
func exprMessage(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		if fe.Snippet == "" {
			return fe.Message
		}
		return fmt.Sprintf("%s (%d:%d)", fe.Message, fe.Line, fe.Column+1)
	}
	return err.Error()
}

// quoteExpr shows an expression's source in a message, on one line.
func quoteExpr(src string) string {
	src = strings.Join(strings.Fields(src), " ")
	if strings.Contains(src, "`") {
		return strconv.Quote(src)
	}
	return "`" + src + "`"
}

// exprErrorLine places an expression's error on the file's line: a block scalar's text starts
// on the line after its key, and a literal block keeps the expression's own line breaks.
func exprErrorLine(n nodeLine, err error) int {
	line := n.line
	if n.block {
		line++
		var fe *file.Error
		if n.literal && errors.As(err, &fe) && fe.Line > 1 {
			line += fe.Line - 1
		}
	}
	return line
}

// nodeLine is what exprErrorLine needs to know of the YAML scalar an expression came from.
type nodeLine struct {
	line           int
	block, literal bool
}

// refs lists the names an expression reads as `<root>.<name>` or `<root>["<name>"]` (steps,
// vars), once each, in order. Names computed at run time cannot be checked and are left out.
func refs(prog *program, root string) []string {
	v := &refVisitor{root: root}
	node := prog.prog.Node()
	ast.Walk(&node, v)
	return v.names
}

type refVisitor struct {
	root  string
	names []string
}

func (v *refVisitor) Visit(node *ast.Node) {
	var base, prop ast.Node
	switch n := (*node).(type) {
	case *ast.MemberNode:
		base, prop = n.Node, n.Property
	case *ast.CallNode: // a member access fetchPatch rewrote
		if id, ok := n.Callee.(*ast.IdentifierNode); !ok || id.Value != fetchName {
			return
		}
		base, prop = n.Arguments[0], n.Arguments[1]
	default:
		return
	}
	if id, ok := base.(*ast.IdentifierNode); !ok || id.Value != v.root {
		return
	}
	if s, ok := prop.(*ast.StringNode); ok {
		for _, seen := range v.names {
			if seen == s.Value {
				return
			}
		}
		v.names = append(v.names, s.Value)
	}
}

// renderer evaluates one call's expressions against one environment, on a pooled VM.
type renderer struct {
	env *exprEnv
	vm  *vm.VM
	of  *Env // the Env this renderer is kept in (Env.renderer), which release hands it back to
}

func newRenderer(env *exprEnv) *renderer {
	return &renderer{env: env, vm: vmPool.Get().(*vm.VM)}
}

func (r *renderer) release() {
	if r.of != nil {
		// An Env's kept renderer keeps its VM for the Env's next evaluation, until Env.Done.
		r.of.busy.Store(false)
		return
	}
	vmPool.Put(r.vm)
	r.vm = nil
}

// run evaluates an expression; its error quotes the expression.
func (r *renderer) run(p *program) (any, error) {
	if p.fast != nil {
		if out, ok := p.fast.run(r.env); ok {
			return out, nil
		}
	}
	out, err := r.vm.Run(p.prog, r.env)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", quoteExpr(p.src), exprMessage(err))
	}
	return out, nil
}

func (r *renderer) runBool(p *program) (bool, error) {
	out, err := r.run(p)
	if err != nil {
		return false, err
	}
	// AsBool makes the program cast its result (nil becomes false), so this holds unless expr
	// changes; a clear error beats a panic if it does.
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("%s: expected bool, got %T", quoteExpr(p.src), out)
	}
	return b, nil
}

// value is one compiled `with` value (or var, or concurrency key, or foreach list).
type value interface {
	render(r *renderer) (any, error)
}

// valueExpr is a value that was compiled on its own, as concurrency_key is.
type valueExpr struct{ val value }

// literal is a YAML value with no expression in it. Only scalars are literals: maps and lists
// are rebuilt on every render so no two runs share one.
type literal struct{ v any }

func (l literal) render(*renderer) (any, error) { return l.v, nil }

// whole is a value that is exactly `${{ expr }}`: it takes the expression's own type.
type whole struct{ prog *program }

func (w whole) render(r *renderer) (any, error) { return r.run(w.prog) }

// text is a string with `${{ }}` inside: lits[i] precedes progs[i], and lits has one more.
type text struct {
	lits  []string
	progs []*program
}

func (t text) render(r *renderer) (any, error) {
	var b strings.Builder
	for i, prog := range t.progs {
		b.WriteString(t.lits[i])
		out, err := r.run(prog)
		if err != nil {
			return nil, err
		}
		b.WriteString(toText(out))
	}
	b.WriteString(t.lits[len(t.lits)-1])
	return b.String(), nil
}

type mapping struct {
	keys []string
	vals []value
}

func (m mapping) render(r *renderer) (any, error) {
	out := make(map[string]any, len(m.keys))
	for i, k := range m.keys {
		v, err := m.vals[i].render(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

type list []value

func (l list) render(r *renderer) (any, error) {
	out := make([]any, len(l))
	for i, e := range l {
		v, err := e.render(r)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}

// toText is how a value reads inside a longer string: as a person would write it, and as JSON
// where it has structure.
func toText(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case int:
		return strconv.Itoa(t)
	case int64:
		return strconv.FormatInt(t, 10)
	case int32:
		return strconv.FormatInt(int64(t), 10)
	case uint64:
		return strconv.FormatUint(t, 10)
	case uint:
		return strconv.FormatUint(uint64(t), 10)
	case float64:
		// 'f' because alert ids and counts arrive from JSON as floats, and "1e+06" is noise.
		return strconv.FormatFloat(t, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(t), 'f', -1, 32)
	case time.Time:
		return t.Format(time.RFC3339Nano)
	case time.Duration:
		return t.String()
	case fmt.Stringer:
		return t.String()
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the text may be a note a person reads, not HTML
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// splitTemplate cuts s into literal text and `${{ }}` expression sources (trimmed); lits has
// one more element than exprs. The end of an expression is the first "}}" outside its own
// braces and string literals, so map literals such as `${{ {"a": {"b": 1}} }}` work.
func splitTemplate(s string) (lits, exprs []string, err error) {
	for {
		i := strings.Index(s, "${{")
		if i < 0 {
			return append(lits, s), exprs, nil
		}
		lits = append(lits, s[:i])
		body := s[i+3:]
		end := exprEnd(body)
		if end < 0 {
			return nil, nil, errors.New(`unterminated "${{": missing "}}"`)
		}
		src := strings.TrimSpace(body[:end])
		if src == "" {
			return nil, nil, errors.New(`empty "${{ }}"`)
		}
		exprs = append(exprs, src)
		s = body[end+2:]
	}
}

func exprEnd(s string) int {
	var quote byte
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			switch {
			case c == '\\' && quote != '`':
				i++
			case c == quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'', '`':
			quote = c
		case '{':
			depth++
		case '}':
			if depth > 0 {
				depth--
			} else if i+1 < len(s) && s[i+1] == '}' {
				return i
			}
		}
	}
	return -1
}
