package playbook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/riposte-soar/riposte/internal/actions"
)

// LoadDir loads every *.yaml and *.yml file under dir, recursively, skipping files and
// directories whose names start with "." (Kubernetes mounts a ConfigMap's files twice, once
// under a hidden "..<timestamp>" directory). Playbooks come back sorted by name. If anything is
// wrong the error is Problems, listing every problem in every file.
func LoadDir(dir string, cat Catalogue) ([]*Playbook, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml":
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load playbooks from %s: %w", dir, err)
	}
	return LoadFiles(paths, cat)
}

// LoadFiles loads the named playbook files. Playbooks come back sorted by name; if anything is
// wrong the error is Problems, listing every problem in every file.
func LoadFiles(paths []string, cat Catalogue) ([]*Playbook, error) {
	var (
		books []*Playbook
		probs Problems
	)
	type place struct {
		file string
		line int
	}
	names := map[string][]place{}
	for _, path := range paths {
		p := &parser{file: path, cat: cat}
		data, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is already the problem's file
			}
			probs = append(probs, Problem{File: path, Msg: fmt.Sprintf("read playbook: %v", err)})
			continue
		}
		b := p.parse(data)
		probs = append(probs, p.problems...)
		if b == nil {
			continue
		}
		books = append(books, b)
		if b.Name != "" {
			names[b.Name] = append(names[b.Name], place{path, p.nameLine})
		}
	}
	for name, at := range names {
		if len(at) < 2 {
			continue
		}
		for i, a := range at {
			var others []string
			for j, o := range at {
				if j != i {
					others = append(others, fmt.Sprintf("%s:%d", o.file, o.line))
				}
			}
			probs = append(probs, Problem{File: a.file, Line: a.line,
				Msg: fmt.Sprintf("duplicate playbook name %q, also in %s", name, strings.Join(others, ", "))})
		}
	}
	if len(probs) > 0 {
		probs.sort()
		return nil, probs
	}
	slices.SortFunc(books, func(a, b *Playbook) int { return strings.Compare(a.Name, b.Name) })
	return books, nil
}

var (
	topKeys   = []string{"name", "description", "on", "when", "vars", "concurrency_key", "steps"}
	stepKeys  = []string{"id", "action", "if", "with", "retry", "timeout", "on_error"}
	retryKeys = []string{"max_attempts", "initial_interval", "max_interval"}

	// The name becomes a subject token (soar.outcomes.<name>) and a metric label.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// A step id must be an expr identifier, or `steps.<id>` would not parse.
	stepIDRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// reservedName is the outcome subject token of alerts no playbook matched.
const reservedName = "unmatched"

// parser walks one file's YAML nodes, so every problem carries the line of what is wrong, and
// carries on after each problem so that all of them are reported.
type parser struct {
	file     string
	cat      Catalogue
	problems []Problem
	nameLine int
}

func (p *parser) addf(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError reports a syntax error at the line yaml gives; yaml.v3 leaves the line out when it
// is the first, so that is where one without a line goes.
func (p *parser) yamlError(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	p.addf(line, "invalid yaml: %s", msg)
}

func (p *parser) parse(data []byte) *Playbook {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.addf(1, "empty file; a playbook needs name, on and steps")
		} else {
			p.yamlError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.addf(extra.Line, "a second yaml document; a file holds one playbook")
	case !errors.Is(err, io.EOF):
		p.yamlError(err)
	}

	if len(doc.Content) == 0 {
		p.addf(1, "empty file; a playbook needs name, on and steps")
		return nil
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		p.addf(root.Line, "a playbook must be a mapping with name, on and steps")
		return nil
	}
	b := &Playbook{File: p.file}
	var whenNode, stepsNode, keyNode *yaml.Node
	found := p.pairs(root, topKeys, "", func(k, v *yaml.Node) {
		switch k.Value {
		case "name":
			p.parseName(b, v)
		case "description":
			if s, ok := p.str(v, "description"); ok {
				b.Description = s
			}
		case "on":
			p.parseOn(b, v)
		case "when":
			whenNode = v
		case "vars":
			b.Vars = p.parseVars(v)
		case "concurrency_key":
			keyNode = v
		case "steps":
			stepsNode = v
		}
	})
	for _, k := range []string{"name", "on", "steps"} {
		if !found[k] {
			p.addf(root.Line, "missing required key %q", k)
		}
	}
	if stepsNode != nil {
		p.parseSteps(b, stepsNode)
	}
	if whenNode != nil {
		p.parseWhen(b, whenNode)
	}
	if keyNode != nil {
		p.parseConcurrencyKey(b, keyNode)
	}
	return b
}

// parseConcurrencyKey compiles `concurrency_key`, a value rendered like a step input before any
// step runs: it may read the alert and vars, not steps.
func (p *parser) parseConcurrencyKey(b *Playbook, v *yaml.Node) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || strings.TrimSpace(v.Value) == "" {
		p.addf(v.Line, "concurrency_key must be a string, e.g. ${{ alert.endpointId }}")
		return
	}
	var refs []stepRef
	cv, ok := p.compileValue(v, "concurrency_key", &refs)
	if !ok {
		return
	}
	if len(refs) > 0 {
		p.addf(v.Line, "concurrency_key: refers to step %q; the key is decided before any step runs", refs[0].id)
		return
	}
	b.concurrencyKey = cv.val
}

// pairs calls fn for each key of a mapping node that is known (every key when known is nil),
// reporting the others and any duplicate, and says which keys it saw. prefix leads every
// message, naming the mapping ("" at the top of the file).
func (p *parser) pairs(n *yaml.Node, known []string, prefix string, fn func(k, v *yaml.Node)) map[string]bool {
	seen := map[string]int{}
	found := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.addf(k.Line, "%skeys must be strings", prefix)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.addf(k.Line, "%sduplicate key %q (first at line %d)", prefix, k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		if known != nil && !slices.Contains(known, k.Value) {
			if s := closest(k.Value, known); s != "" {
				p.addf(k.Line, "%sunknown key %q; did you mean %q?", prefix, k.Value, s)
			} else {
				p.addf(k.Line, "%sunknown key %q", prefix, k.Value)
			}
			continue
		}
		found[k.Value] = true
		fn(k, v)
	}
	return found
}

// resolve follows YAML aliases (*anchor) to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// str reads a scalar as text; what names the value in the message when it is not one.
func (p *parser) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.addf(n.Line, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

func (p *parser) parseName(b *Playbook, v *yaml.Node) {
	p.nameLine = v.Line
	name, ok := p.str(v, "name")
	switch {
	case !ok:
	case name == "":
		p.addf(v.Line, "name must not be empty")
	case !nameRE.MatchString(name):
		p.addf(v.Line, "name %q must match [A-Za-z0-9_-]+, as it becomes a subject token", name)
	case name == reservedName:
		p.addf(v.Line, "name %q is reserved for alerts that no playbook matches", name)
	default:
		b.Name = name
	}
}

func (p *parser) parseOn(b *Playbook, v *yaml.Node) {
	var items []*yaml.Node
	switch v.Kind {
	case yaml.ScalarNode:
		items = []*yaml.Node{v}
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			p.addf(v.Line, "on must list at least one subject filter")
		}
		for _, it := range v.Content {
			items = append(items, resolve(it))
		}
	default:
		p.addf(v.Line, "on must be a subject filter or a list of them")
	}
	for _, it := range items {
		f, ok := p.str(it, "subject filter")
		if !ok {
			continue
		}
		if why := checkFilter(f); why != "" {
			p.addf(it.Line, "subject filter %q %s", f, why)
			continue
		}
		b.On = append(b.On, f)
		b.filters = append(b.filters, strings.Split(f, "."))
	}
}

func (p *parser) parseWhen(b *Playbook, v *yaml.Node) {
	src, ok := p.exprSource(v, "when")
	if !ok {
		return
	}
	prog, err := compileBool(src)
	if err != nil {
		p.addf(exprErrorLine(lineOf(v), err), "when: %s", exprMessage(err))
		return
	}
	b.when = prog
	for _, id := range stepRefs(prog) {
		if slices.ContainsFunc(b.Steps, func(s *Step) bool { return s.ID == id }) {
			p.addf(v.Line, "when: refers to step %q, which runs later", id)
		} else {
			p.addf(v.Line, "when: refers to unknown step %q", id)
		}
	}
}

// exprSource reads a `when` or `if`. A YAML bool (`when: true`) is an expression like any other.
func (p *parser) exprSource(v *yaml.Node, what string) (string, bool) {
	if v.Kind != yaml.ScalarNode || strings.TrimSpace(v.Value) == "" || v.Tag == "!!null" {
		p.addf(v.Line, "%s must be an expression", what)
		return "", false
	}
	if strings.Contains(v.Value, "${{") {
		p.addf(v.Line, "%s is an expression already; write it without \"${{ }}\"", what)
		return "", false
	}
	return v.Value, true
}

func lineOf(v *yaml.Node) nodeLine {
	return nodeLine{
		line:    v.Line,
		block:   v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0,
		literal: v.Style&yaml.LiteralStyle != 0,
	}
}

func (p *parser) parseVars(v *yaml.Node) map[string]any {
	if v.Tag == "!!null" {
		return nil // `vars:` with everything commented out
	}
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "vars must be a mapping")
		return nil
	}
	lit, ok := p.literal(v, "vars")
	if !ok {
		return nil
	}
	return lit.(map[string]any)
}

// literal converts a YAML value with no expressions to the Go value actions receive: ints as
// int, floats as float64, maps as map[string]any, lists as []any. where names it in messages.
func (p *parser) literal(n *yaml.Node, where string) (any, bool) {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				p.addf(k.Line, "%s: keys must be strings", where)
				ok = false
				continue
			}
			v, vok := p.literal(n.Content[i+1], where+"."+k.Value)
			ok = ok && vok
			out[k.Value] = v
		}
		return out, ok
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		ok := true
		for i, e := range n.Content {
			v, eok := p.literal(e, fmt.Sprintf("%s[%d]", where, i))
			ok = ok && eok
			out[i] = v
		}
		return out, ok
	case yaml.ScalarNode:
		if n.Tag == "!!str" && strings.Contains(n.Value, "${{") {
			p.addf(n.Line, "%s: expressions are not evaluated here; write a literal", where)
			return nil, false
		}
		return p.scalar(n)
	}
	p.addf(n.Line, "%s: unsupported yaml value", where)
	return nil, false
}

func (p *parser) scalar(n *yaml.Node) (any, bool) {
	switch n.Tag {
	case "!!str", "!!timestamp", "!!binary":
		// Timestamps stay text: inputs travel as JSON, and the vendor wants the text it was given.
		return n.Value, true
	}
	var v any
	if err := n.Decode(&v); err != nil {
		p.addf(n.Line, "invalid value %q: %v", n.Value, err)
		return nil, false
	}
	switch t := v.(type) {
	case int64:
		if t >= math.MinInt && t <= math.MaxInt {
			return int(t), true
		}
	case uint64:
		if t <= math.MaxInt {
			return int(t), true
		}
	}
	return v, true
}

// stepDraft is a step being parsed, with what must wait until every step id is known.
type stepDraft struct {
	step  *Step
	label string // `step "id"`, or `step 3` when the id is missing
	refs  []stepRef
}

type stepRef struct {
	id   string
	line int
}

func (p *parser) parseSteps(b *Playbook, v *yaml.Node) {
	if v.Kind != yaml.SequenceNode {
		p.addf(v.Line, "steps must be a list of steps")
		return
	}
	if len(v.Content) == 0 {
		p.addf(v.Line, "steps must list at least one step")
		return
	}
	var drafts []*stepDraft
	index := map[string]int{} // step id → position of its first definition
	for i, n := range v.Content {
		d := p.parseStep(resolve(n), i, b.Vars)
		if d == nil {
			continue
		}
		if id := d.step.ID; id != "" {
			if first, dup := index[id]; dup {
				p.addf(d.step.Line, "duplicate step id %q (first at line %d)", id, drafts[first].step.Line)
			} else {
				index[id] = len(drafts)
			}
		}
		drafts = append(drafts, d)
	}
	ids := make([]string, 0, len(index))
	for id := range index {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, d := range drafts {
		for _, r := range d.refs {
			at, ok := index[r.id]
			switch {
			case !ok:
				if s := closest(r.id, ids); s != "" {
					p.addf(r.line, "%s: refers to unknown step %q; did you mean %q?", d.label, r.id, s)
				} else {
					p.addf(r.line, "%s: refers to unknown step %q", d.label, r.id)
				}
			case at == i:
				p.addf(r.line, "%s: refers to itself", d.label)
			case at > i:
				p.addf(r.line, "%s: refers to step %q, which runs later", d.label, r.id)
			}
		}
		b.Steps = append(b.Steps, d.step)
	}
}

func (p *parser) parseStep(n *yaml.Node, i int, vars map[string]any) *stepDraft {
	if n.Kind != yaml.MappingNode {
		p.addf(n.Line, "step %d must be a mapping with id and action", i+1)
		return nil
	}
	s := &Step{Line: n.Line, Retry: actions.DefaultRetryPolicy(), OnError: OnErrorStop, vars: vars}
	d := &stepDraft{step: s, label: fmt.Sprintf("step %d", i+1)}
	// Every message about the step names it, including those about keys before its id.
	for j := 0; j+1 < len(n.Content); j += 2 {
		if k, v := n.Content[j], resolve(n.Content[j+1]); k.Value == "id" && v.Kind == yaml.ScalarNode && v.Value != "" {
			d.label = fmt.Sprintf("step %q", v.Value)
			break
		}
	}
	nodes := map[string]*yaml.Node{}
	keys := map[string]*yaml.Node{}
	p.pairs(n, stepKeys, d.label+": ", func(k, v *yaml.Node) {
		nodes[k.Value] = v
		keys[k.Value] = k
	})

	if v := nodes["id"]; v == nil {
		p.addf(n.Line, "%s: missing required key \"id\"", d.label)
	} else if id, ok := p.str(v, d.label+": id"); ok {
		if !stepIDRE.MatchString(id) {
			p.addf(v.Line, "step id %q must match [A-Za-z_][A-Za-z0-9_]*, as expressions read it as steps.<id>", id)
		}
		s.ID = id
	}

	known := false
	if v := nodes["action"]; v == nil {
		p.addf(n.Line, "%s: missing required key \"action\"", d.label)
	} else if name, ok := p.str(v, d.label+": action"); ok {
		s.Action = name
		if s.spec, known = p.cat.Spec(name); !known {
			if sug := p.cat.Suggest(name); sug != "" {
				p.addf(v.Line, "%s: unknown action %q; did you mean %s?", d.label, name, sug)
			} else {
				p.addf(v.Line, "%s: unknown action %q", d.label, name)
			}
		}
	}

	if v := nodes["if"]; v != nil {
		if src, ok := p.exprSource(v, d.label+": if"); ok {
			if prog, err := compileBool(src); err != nil {
				p.addf(exprErrorLine(lineOf(v), err), "%s: if: %s", d.label, exprMessage(err))
			} else {
				s.cond = prog
				for _, id := range stepRefs(prog) {
					d.refs = append(d.refs, stepRef{id, v.Line})
				}
			}
		}
	}

	p.parseWith(d, nodes["with"], keys["with"], n, known)

	if v := nodes["retry"]; v != nil {
		p.parseRetry(d, v)
	}
	if v := nodes["timeout"]; v != nil {
		if t, ok := p.duration(v, d.label+": timeout", true); ok {
			s.Retry.AttemptTimeout = t
		}
	}
	if v := nodes["on_error"]; v != nil {
		if oe, ok := p.str(v, d.label+": on_error"); ok {
			switch OnError(oe) {
			case OnErrorStop, OnErrorContinue:
				s.OnError = OnError(oe)
			default:
				p.addf(v.Line, "%s: on_error must be stop or continue, got %q", d.label, oe)
			}
		}
	}
	return d
}

// parseWith compiles a step's inputs and, when the action is known, checks them against its
// spec: names, required inputs, the type and limits of every literal, and, when every input is
// a literal, how they fit together.
func (p *parser) parseWith(d *stepDraft, v, key, stepNode *yaml.Node, actionKnown bool) {
	s := d.step
	given := map[string]bool{}
	before := len(p.problems)
	literals := actions.Inputs{}
	allLiteral := true
	switch {
	case v == nil || v.Tag == "!!null":
	case v.Kind != yaml.MappingNode:
		p.addf(v.Line, "%s: with must be a mapping of input names to values", d.label)
	default:
		names := make([]string, len(s.spec.Inputs))
		for i, in := range s.spec.Inputs {
			names[i] = in.Name
		}
		p.pairs(v, nil, d.label+": with: ", func(k, val *yaml.Node) {
			given[k.Value] = true
			label := fmt.Sprintf("%s input %q", d.label, k.Value)
			cv, ok := p.compileValue(val, label, &d.refs)
			if !ok {
				return
			}
			s.with = append(s.with, input{name: k.Value, val: cv.val})
			if !cv.isLit {
				allLiteral = false
			} else {
				literals[k.Value] = cv.lit
			}
			if !actionKnown {
				return
			}
			decl, known := s.spec.Input(k.Value)
			if !known {
				if sug := closest(k.Value, names); sug != "" {
					p.addf(k.Line, "%s: action %s has no input %q; did you mean %q?", d.label, s.Action, k.Value, sug)
				} else {
					p.addf(k.Line, "%s: action %s has no input %q", d.label, s.Action, k.Value)
				}
				return
			}
			if cv.isLit {
				// The very check the dispatcher runs before each call, so load and run time
				// never disagree about what an input accepts.
				if msg := decl.CheckValue(cv.lit); msg != "" {
					p.addf(val.Line, "%s: %s", d.label, msg)
				}
			}
		})
		slices.SortFunc(s.with, func(a, b input) int { return strings.Compare(a.name, b.name) })
	}
	if !actionKnown {
		return
	}
	line := stepNode.Line
	if key != nil {
		line = key.Line
	}
	for _, decl := range s.spec.Inputs {
		if decl.Required && !given[decl.Name] {
			p.addf(line, "%s: missing required input %q of %s", d.label, decl.Name, s.Action)
		}
	}
	if allLiteral && s.spec.Validate != nil && len(p.problems) == before {
		if _, err := s.spec.Check(literals); err != nil {
			p.addf(line, "%s: %s", d.label, strings.TrimPrefix(err.Error(), s.spec.Name+": invalid inputs: "))
		}
	}
}

// compiled is one compiled `with` value; lit is its plain Go value when it holds no expression
// anywhere, so that it can be type-checked at load.
type compiled struct {
	val   value
	lit   any
	isLit bool
}

func (p *parser) compileValue(n *yaml.Node, label string, refs *[]stepRef) (compiled, bool) {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		m := mapping{}
		lit := map[string]any{}
		ok, isLit := true, true
		p.pairs(n, nil, label+": ", func(k, v *yaml.Node) {
			c, cok := p.compileValue(v, label, refs)
			ok = ok && cok
			isLit = isLit && c.isLit
			m.keys = append(m.keys, k.Value)
			m.vals = append(m.vals, c.val)
			lit[k.Value] = c.lit
		})
		if !isLit {
			lit = nil
		}
		return compiled{val: m, lit: lit, isLit: isLit}, ok
	case yaml.SequenceNode:
		l := make(list, len(n.Content))
		lit := make([]any, len(n.Content))
		ok, isLit := true, true
		for i, e := range n.Content {
			c, cok := p.compileValue(e, label, refs)
			ok = ok && cok
			isLit = isLit && c.isLit
			l[i], lit[i] = c.val, c.lit
		}
		if !isLit {
			lit = nil
		}
		return compiled{val: l, lit: lit, isLit: isLit}, ok
	case yaml.ScalarNode:
		if n.Tag == "!!str" && strings.Contains(n.Value, "${{") {
			return p.compileTemplate(n, label, refs)
		}
		v, ok := p.scalar(n)
		return compiled{val: literal{v}, lit: v, isLit: true}, ok
	}
	p.addf(n.Line, "%s: unsupported yaml value", label)
	return compiled{}, false
}

func (p *parser) compileTemplate(n *yaml.Node, label string, refs *[]stepRef) (compiled, bool) {
	line := n.Line
	if lineOf(n).block {
		line++
	}
	lits, exprs, err := splitTemplate(n.Value)
	if err != nil {
		p.addf(line, "%s: %v", label, err)
		return compiled{}, false
	}
	progs := make([]*vm.Program, 0, len(exprs))
	ok := true
	for _, src := range exprs {
		prog, err := compileAny(src)
		if err != nil {
			p.addf(line, "%s: %s", label, exprMessage(err))
			ok = false
			continue
		}
		progs = append(progs, prog)
		for _, id := range stepRefs(prog) {
			*refs = append(*refs, stepRef{id, n.Line})
		}
	}
	if !ok {
		return compiled{}, false
	}
	if len(progs) == 1 && strings.TrimSpace(lits[0]) == "" && strings.TrimSpace(lits[1]) == "" {
		return compiled{val: whole{progs[0]}}, true
	}
	return compiled{val: text{lits: lits, progs: progs}}, true
}

func (p *parser) parseRetry(d *stepDraft, v *yaml.Node) {
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "%s: retry must be a mapping of %s", d.label, strings.Join(retryKeys, ", "))
		return
	}
	r := &d.step.Retry
	var initialLine int
	found := p.pairs(v, retryKeys, d.label+": retry: ", func(k, val *yaml.Node) {
		what := d.label + ": retry." + k.Value
		switch k.Value {
		case "max_attempts":
			n, err := strconv.Atoi(val.Value)
			switch {
			case val.Kind != yaml.ScalarNode || val.Tag != "!!int" || err != nil:
				p.addf(val.Line, "%s must be a whole number, got %q", what, val.Value)
			case n < 1:
				p.addf(val.Line, "%s must be at least 1, got %d", what, n)
			default:
				r.MaxAttempts = n
			}
		case "initial_interval":
			if t, ok := p.duration(val, what, false); ok {
				r.InitialInterval, initialLine = t, val.Line
			}
		case "max_interval":
			if t, ok := p.duration(val, what, false); ok {
				r.MaxInterval = t
			}
		}
	})
	if found["initial_interval"] && found["max_interval"] && initialLine != 0 &&
		r.MaxInterval > 0 && r.MaxInterval < r.InitialInterval {
		p.addf(initialLine, "%s: retry.initial_interval %s is longer than max_interval %s", d.label, r.InitialInterval, r.MaxInterval)
	}
}

// duration parses a Go duration ("500ms", "30s"); zeroOK allows 0, which for a timeout means none.
func (p *parser) duration(v *yaml.Node, what string, zeroOK bool) (time.Duration, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		p.addf(v.Line, "%s must be a duration such as 500ms or 30s", what)
		return 0, false
	}
	t, err := time.ParseDuration(v.Value)
	switch {
	case err != nil:
		p.addf(v.Line, "%s: invalid duration %q; write it like 500ms or 30s", what, v.Value)
		return 0, false
	case t < 0 || (t == 0 && !zeroOK):
		p.addf(v.Line, "%s must be positive, got %q", what, v.Value)
		return 0, false
	}
	return t, true
}

// closest returns the candidate nearest to a mistyped name, or "" when none is near enough to be
// what was meant. Case is ignored and a transposition counts as one edit, the usual typos.
func closest(name string, candidates []string) string {
	best, bestDist := "", max(1, len(name)/3)+1 // a candidate must come strictly closer than this
	lname := strings.ToLower(name)
	for _, c := range candidates {
		d := editDistance(lname, strings.ToLower(c))
		if d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
