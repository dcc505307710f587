package playbook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

func compileBool(src string) (*vm.Program, error) {
	return expr.Compile(src, expr.Env(exprEnv{}), expr.AsBool())
}

func compileAny(src string) (*vm.Program, error) {
	return expr.Compile(src, expr.Env(exprEnv{}))
}

// A VM keeps its stack between runs; pooling them saves an allocation per evaluation on the hot
// path while each goroutine still has its own.
var vmPool = sync.Pool{New: func() any { return new(vm.VM) }}

func getVM() *vm.VM  { return vmPool.Get().(*vm.VM) }
func putVM(m *vm.VM) { vmPool.Put(m) }

func runBool(prog *vm.Program, env *exprEnv) (bool, error) {
	m := getVM()
	defer putVM(m)
	out, err := m.Run(prog, env)
	if err != nil {
		return false, errors.New(exprMessage(err))
	}
	// AsBool makes the program cast its result (nil becomes false), so this holds unless expr
	// changes; a clear error beats a panic if it does.
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expected bool, got %T", out)
	}
	return b, nil
}

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

// stepRefs lists the step ids an expression reads as `steps.<id>` or `steps["<id>"]`, once
// each, in order. Ids computed at run time cannot be checked and are left out.
func stepRefs(prog *vm.Program) []string {
	v := &refVisitor{}
	node := prog.Node()
	ast.Walk(&node, v)
	return v.ids
}

type refVisitor struct{ ids []string }

func (v *refVisitor) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok {
		return
	}
	if id, ok := m.Node.(*ast.IdentifierNode); !ok || id.Value != "steps" {
		return
	}
	if s, ok := m.Property.(*ast.StringNode); ok {
		for _, seen := range v.ids {
			if seen == s.Value {
				return
			}
		}
		v.ids = append(v.ids, s.Value)
	}
}

// value is one compiled `with` value.
type value interface {
	render(r *renderer) (any, error)
}

type renderer struct {
	env *exprEnv
	vm  *vm.VM
}

func (r *renderer) run(prog *vm.Program) (any, error) {
	out, err := r.vm.Run(prog, r.env)
	if err != nil {
		return nil, errors.New(exprMessage(err))
	}
	return out, nil
}

// literal is a YAML value with no expression in it. Only scalars are literals: maps and lists
// are rebuilt on every render so no two runs share one.
type literal struct{ v any }

func (l literal) render(*renderer) (any, error) { return l.v, nil }

// whole is a value that is exactly `${{ expr }}`: it takes the expression's own type.
type whole struct{ prog *vm.Program }

func (w whole) render(r *renderer) (any, error) { return r.run(w.prog) }

// text is a string with `${{ }}` inside: lits[i] precedes progs[i], and lits has one more.
type text struct {
	lits  []string
	progs []*vm.Program
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
