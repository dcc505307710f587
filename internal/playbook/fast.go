package playbook

import (
	"reflect"
	"regexp"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm/runtime"
)

// fastExpr is an expression compiled to Go closures instead of expr's bytecode, for the forms
// most conditions are made of: members of the alert, literals, comparisons, `in`, `&&`, `||`,
// `not` and the string operators. Every playbook's `when` is evaluated for every alert on its
// subjects, most of them false, and expr's VM spends more on each (its stack, its dispatch,
// reading the environment's fields through reflection) than the comparison itself.
//
// It decides only what it is sure of. An expression with any other node has no fastExpr, and
// one that meets, at run time, a value it does not expect (a `&&` on a non-bool, a member of
// a value that is not an object, anything that would make expr fail) gives up and the VM
// runs the expression instead, so every value and every error remains expr's. FuzzFastExpr
// holds it to the VM.
type fastExpr struct {
	eval   fastFn
	asBool bool // a condition: as expr.AsBool's cast, nil is false and anything else not a bool is the VM's to refuse
}

// fastFn yields a value, or ok false to hand the expression to the VM.
type fastFn func(env *exprEnv) (v any, ok bool)

// run evaluates f in env; ok false means the VM must.
func (f *fastExpr) run(env *exprEnv) (v any, ok bool) {
	defer func() {
		// The helpers of expr's runtime panic on values they cannot compare; the VM turns that
		// into its error, with its position.
		if recover() != nil {
			v, ok = nil, false
		}
	}()
	v, ok = f.eval(env)
	if !ok || !f.asBool {
		return v, ok
	}
	switch v.(type) {
	case nil:
		return false, true
	case bool:
		return v, true
	}
	return nil, false
}

// compileFast compiles n, the tree expr compiled (checked, patched and optimized), or says it
// cannot.
func compileFast(n ast.Node, asBool bool) *fastExpr {
	fn := fastNode(n)
	if fn == nil {
		return nil
	}
	return &fastExpr{eval: fn, asBool: asBool}
}

// fastNode is n as a fastFn, or nil for a node it does not take. Each case does what expr's
// compiler and VM do for that node (compiler.go, vm.go of expr-lang/expr v1.17).
func fastNode(n ast.Node) fastFn {
	switch n := n.(type) {
	case *ast.NilNode:
		return constant(nil)
	case *ast.BoolNode:
		return constant(n.Value)
	case *ast.StringNode:
		return constant(n.Value)
	case *ast.IntegerNode:
		// The checker may type an integer literal as another number; the compiler converts it.
		switch t := n.Type(); {
		case t == nil || t.Kind() == reflect.Int:
			return constant(n.Value)
		case t.Kind() == reflect.Int64:
			return constant(int64(n.Value))
		case t.Kind() == reflect.Float64:
			return constant(float64(n.Value))
		}
		return nil
	case *ast.FloatNode:
		if t := n.Type(); t != nil && t.Kind() == reflect.Float32 {
			return nil
		}
		return constant(n.Value)
	case *ast.ConstantNode: // the optimizer's: folded literals, and the sets `x in ["a", "b"]` becomes
		return constant(n.Value)
	case *ast.IdentifierNode:
		return fastIdentifier(n.Value)
	case *ast.CallNode:
		return fastFetch(n)
	case *ast.UnaryNode:
		if n.Operator != "!" && n.Operator != "not" {
			return nil
		}
		x := fastNode(n.Node)
		if x == nil {
			return nil
		}
		return func(env *exprEnv) (any, bool) {
			v, ok := x(env)
			if b, isBool := v.(bool); ok && isBool {
				return !b, true
			}
			return nil, false
		}
	case *ast.BinaryNode:
		return fastBinary(n)
	}
	return nil
}

func constant(v any) fastFn {
	return func(*exprEnv) (any, bool) { return v, true }
}

// fastIdentifier reads a field of the environment by its name in expressions (exprEnv's tags),
// where expr would read it through reflection. Functions (now, since) are the VM's.
func fastIdentifier(name string) fastFn {
	switch name {
	case "alert":
		return func(env *exprEnv) (any, bool) { return env.Alert, true }
	case "vars":
		return func(env *exprEnv) (any, bool) { return env.Vars, true }
	case "subject":
		return func(env *exprEnv) (any, bool) { return env.Subject, true }
	case "alert_id":
		return func(env *exprEnv) (any, bool) { return env.AlertID, true }
	case itemName:
		return func(env *exprEnv) (any, bool) { return env.Item, true }
	}
	return nil
}

// fastFetch is fetchPatch's call, `x.name` on a value that may be an object: an object's member
// is read here as fetchField reads it, anything else (nil, which expr refuses) is left to the VM.
func fastFetch(n *ast.CallNode) fastFn {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok || id.Value != fetchName || len(n.Arguments) != 2 {
		return nil
	}
	name, ok := n.Arguments[1].(*ast.StringNode)
	if !ok {
		return nil
	}
	key := name.Value
	if root, ok := n.Arguments[0].(*ast.IdentifierNode); ok && root.Value == "alert" {
		// alert.x, most of what conditions read, in one step.
		return func(env *exprEnv) (any, bool) { return env.Alert[key], true }
	}
	from := fastNode(n.Arguments[0])
	if from == nil {
		return nil
	}
	return func(env *exprEnv) (any, bool) {
		v, ok := from(env)
		if m, isObject := v.(map[string]any); ok && isObject {
			return m[key], true
		}
		return nil, false
	}
}

func fastBinary(n *ast.BinaryNode) fastFn {
	l, r := fastNode(n.Left), fastNode(n.Right)
	if l == nil || r == nil {
		return nil
	}
	switch n.Operator {
	case "&&", "and", "||", "or":
		// Short-circuited as the VM jumps: the left must be a bool, the right is the result
		// as it is.
		or := n.Operator == "||" || n.Operator == "or"
		return func(env *exprEnv) (any, bool) {
			v, ok := l(env)
			b, isBool := v.(bool)
			if !ok || !isBool {
				return nil, false
			}
			if b == or {
				return b, true
			}
			return r(env)
		}
	case "==", "!=":
		not := n.Operator == "!="
		if s, ok := n.Right.(*ast.StringNode); ok {
			want := s.Value
			return func(env *exprEnv) (any, bool) {
				v, ok := l(env)
				if !ok {
					return nil, false
				}
				if got, isString := v.(string); isString {
					return (got == want) != not, true
				}
				return runtime.Equal(v, want) != not, true
			}
		}
		return binary(l, r, func(a, b any) any { return runtime.Equal(a, b) != not })
	case "<":
		return binary(l, r, func(a, b any) any { return runtime.Less(a, b) })
	case ">":
		return binary(l, r, func(a, b any) any { return runtime.More(a, b) })
	case "<=":
		return binary(l, r, func(a, b any) any { return runtime.LessOrEqual(a, b) })
	case ">=":
		return binary(l, r, func(a, b any) any { return runtime.MoreOrEqual(a, b) })
	case "in":
		if set, ok := constantOf(n.Right).(map[string]struct{}); ok {
			return func(env *exprEnv) (any, bool) {
				v, ok := l(env)
				if s, isString := v.(string); ok && isString {
					_, in := set[s]
					return in, true
				}
				return nil, false
			}
		}
		return binary(l, r, fastIn)
	case "startsWith":
		return binary(l, r, stringOp(strings.HasPrefix))
	case "endsWith":
		return binary(l, r, stringOp(strings.HasSuffix))
	case "contains":
		return binary(l, r, stringOp(strings.Contains))
	case "matches":
		s, ok := n.Right.(*ast.StringNode)
		if !ok {
			return nil
		}
		re, err := regexp.Compile(s.Value)
		if err != nil {
			return nil
		}
		return func(env *exprEnv) (any, bool) {
			v, ok := l(env)
			if !ok {
				return nil, false
			}
			if str, isString := v.(string); isString {
				return re.MatchString(str), true
			}
			if runtime.IsNil(v) {
				return false, true
			}
			return nil, false
		}
	}
	return nil
}

// binary evaluates both sides, the left first, then op; op may panic, as expr's runtime does.
func binary(l, r fastFn, op func(a, b any) any) fastFn {
	return func(env *exprEnv) (any, bool) {
		a, ok := l(env)
		if !ok {
			return nil, false
		}
		b, ok := r(env)
		if !ok {
			return nil, false
		}
		return op(a, b), true
	}
}

// fastIn is runtime.In, with a list of the alert's read without reflection.
func fastIn(needle, list any) any {
	if l, ok := list.([]any); ok {
		for _, e := range l {
			if runtime.Equal(e, needle) {
				return true
			}
		}
		return false
	}
	return runtime.In(needle, list)
}

// stringOp is what the VM does for startsWith, endsWith and contains: false when either side
// is nil, else both must be strings.
func stringOp(op func(s, x string) bool) func(a, b any) any {
	return func(a, b any) any {
		if s, ok := a.(string); ok {
			if x, ok := b.(string); ok {
				return op(s, x)
			}
		}
		if runtime.IsNil(a) || runtime.IsNil(b) {
			return false
		}
		return op(a.(string), b.(string))
	}
}

func constantOf(n ast.Node) any {
	if c, ok := n.(*ast.ConstantNode); ok {
		return c.Value
	}
	return nil
}

// fieldGuard is what a condition's first test says about one member of the alert: a `when`
// that begins `alert.type == "phishing" && …` or `alert.severity in ["high", "critical"] && …`
// is false for an alert whose type, or severity, is another, and since expr short-circuits,
// nothing after that first test runs for it: no value, no error. Most playbooks are written
// this way, and most alerts are of a type most playbooks are not for; the guard answers for
// them with one map read, before any evaluation is readied.
type fieldGuard struct {
	field  string
	equals string              // `alert.field == equals`, when set is nil
	set    map[string]struct{} // `alert.field in [...]`, the optimizer's set of the strings
}

// guardOf finds the guard of a condition's tree, or nil when its first test is not one.
func guardOf(n ast.Node) *fieldGuard {
	for {
		b, ok := n.(*ast.BinaryNode)
		if !ok || b.Operator != "&&" && b.Operator != "and" {
			break
		}
		n = b.Left
	}
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	switch b.Operator {
	case "==":
		if f, ok := alertMember(b.Left); ok {
			if s, ok := b.Right.(*ast.StringNode); ok {
				return &fieldGuard{field: f, equals: s.Value}
			}
		}
		if f, ok := alertMember(b.Right); ok {
			if s, ok := b.Left.(*ast.StringNode); ok {
				return &fieldGuard{field: f, equals: s.Value}
			}
		}
	case "in":
		if f, ok := alertMember(b.Left); ok {
			if set, ok := constantOf(b.Right).(map[string]struct{}); ok {
				return &fieldGuard{field: f, set: set}
			}
		}
	}
	return nil
}

// alertMember is the name in `alert.name` (or `alert["name"]`) as fetchPatch rewrote it.
func alertMember(n ast.Node) (string, bool) {
	c, ok := n.(*ast.CallNode)
	if !ok {
		return "", false
	}
	if id, ok := c.Callee.(*ast.IdentifierNode); !ok || id.Value != fetchName || len(c.Arguments) != 2 {
		return "", false
	}
	if root, ok := c.Arguments[0].(*ast.IdentifierNode); !ok || root.Value != "alert" {
		return "", false
	}
	name, ok := c.Arguments[1].(*ast.StringNode)
	if !ok {
		return "", false
	}
	return name.Value, true
}

// mayHold says whether the condition can hold for alert: false only where its first test is
// false, as expr would find it.
func (g *fieldGuard) mayHold(alert map[string]any) bool {
	v := alert[g.field]
	if g.set == nil {
		if s, ok := v.(string); ok {
			return s == g.equals
		}
		return runtime.Equal(v, g.equals)
	}
	switch v := v.(type) {
	case string:
		_, in := g.set[v]
		return in
	case nil:
		_, in := g.set[""] // expr looks nil up as the set's zero key
		return in
	}
	return true // `in` on a set fails for any other value: the VM says how
}
