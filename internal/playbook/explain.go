package playbook

import (
	"github.com/expr-lang/expr/ast"
	exprparser "github.com/expr-lang/expr/parser"
)

// Why is one part of a condition that did not hold, with the values it read: what a playbook
// author needs to see to know why a playbook or step did not run.
type Why struct {
	Part string // the sub-expression, as source
	Err  string // set when the part could not be evaluated
	Saw  []Seen // the values the part read, in order
}

// Seen is a value a condition read.
type Seen struct {
	Expr  string
	Value any
}

// ExplainWhen says which parts of the playbook's `when` were false for env; nil when it holds
// (or there is none).
func (p *Playbook) ExplainWhen(env *Env) []Why {
	if p.when == nil {
		return nil
	}
	return p.explain(env, nil, p.when.src, scope{})
}

// ExplainIf is ExplainWhen for the step's `if`, for one item under foreach (nil otherwise).
func (s *Step) ExplainIf(env *Env, item any) []Why {
	if s.cond == nil {
		return nil
	}
	return s.book.explain(env, item, s.cond.src, scope{item: s.As})
}

// explain takes the condition apart at its `and`s: each conjunct that is false is a reason. A
// conjunct that is not itself an `and` is reported whole, with the values of the fields it reads.
func (p *Playbook) explain(env *Env, item any, src string, sc scope) []Why {
	tree, err := exprparser.Parse(src)
	if err != nil {
		return []Why{{Part: src, Err: err.Error()}}
	}
	r, err := p.prepare(env, item)
	if err != nil {
		return []Why{{Part: src, Err: err.Error()}}
	}
	defer r.release()
	var out []Why
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			walk(b.Left)
			walk(b.Right)
			return
		}
		part := n.String()
		prog, err := compile(part, sc, true)
		if err != nil {
			out = append(out, Why{Part: part, Err: exprMessage(err)})
			return
		}
		ok, err := r.runBool(prog)
		if err == nil && ok {
			return
		}
		w := Why{Part: part, Saw: seen(n, sc, r)}
		if err != nil {
			w.Err = err.Error()
		}
		out = append(out, w)
	}
	walk(tree.Node)
	return out
}

// seen evaluates the outermost field reads (alert.severity, vars.host, steps.x.output.state,
// subject) of a condition part.
func seen(n ast.Node, sc scope, r *renderer) []Seen {
	v := &readVisitor{item: sc.item}
	ast.Walk(&n, v)
	var out []Seen
	for _, src := range v.reads {
		prog, err := compile(src, sc, false)
		if err != nil {
			continue
		}
		val, err := r.run(prog)
		if err != nil {
			continue
		}
		out = append(out, Seen{Expr: src, Value: val})
	}
	return out
}

// readVisitor collects the field reads of an expression that are not part of a longer read.
// ast.Walk visits children before parents, so a longer chain comes after its prefixes and
// replaces them.
type readVisitor struct {
	item  string // a foreach step's item name, a root too
	reads []string
}

var roots = map[string]bool{"alert": true, "vars": true, "steps": true, "headers": true, "subject": true, "alert_id": true}

func (v *readVisitor) Visit(node *ast.Node) {
	var root string
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		root = n.Value
	case *ast.MemberNode:
		root = rootOf(n)
	case *ast.ChainNode:
		root = rootOf(n.Node)
	default:
		return
	}
	if !roots[root] && (root == "" || root != v.item) {
		return
	}
	src := (*node).String()
	kept := v.reads[:0]
	for _, r := range v.reads {
		if !isPrefixRead(r, src) {
			kept = append(kept, r)
		}
	}
	v.reads = append(kept, src)
}

func rootOf(n ast.Node) string {
	for {
		switch t := n.(type) {
		case *ast.MemberNode:
			n = t.Node
		case *ast.ChainNode:
			n = t.Node
		case *ast.IdentifierNode:
			return t.Value
		default:
			return ""
		}
	}
}

// isPrefixRead reports whether read is a prefix of the longer read longer (alert of
// alert.severity, alert.a of alert.a["b"]).
func isPrefixRead(read, longer string) bool {
	if len(read) >= len(longer) || longer[:len(read)] != read {
		return false
	}
	switch longer[len(read)] {
	case '.', '[', '?':
		return true
	}
	return false
}
