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
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/builtin"
	"go.yaml.in/yaml/v3"

	"github.com/riposte-soar/riposte/internal/actions"
)

// LoadDir loads every *.yaml and *.yml file under dir, recursively, skipping files and
// directories whose names start with "." (Kubernetes mounts a ConfigMap's files twice, once
// under a hidden "..<timestamp>" directory). Playbooks come back sorted by name. If anything is
// wrong the error is Problems, listing every problem in every file.
func LoadDir(dir string, cat Catalogue) ([]*Playbook, error) {
	paths, err := Files(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(paths, cat)
}

// Files lists the playbook files under dir as LoadDir reads them: every *.yaml and *.yml,
// in subdirectories too, skipping names that start with a dot.
func Files(dir string) ([]string, error) {
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
	return paths, nil
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
		data, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is already the problem's file
			}
			probs = append(probs, Problem{File: path, Msg: fmt.Sprintf("read playbook: %v", err)})
			continue
		}
		p := &parser{file: path, cat: cat}
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
	// The name becomes a subject token (soar.outcomes.<name>) and a metric label.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// A step id must be an expr identifier, or `steps.<id>` would not parse; so must `as`.
	stepIDRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// reservedName is the outcome subject token of alerts no playbook matched.
const reservedName = "unmatched"

// decisionsName is the approvals subject token decisions arrive on.
const decisionsName = "decisions"

// defaultItem is the name foreach binds its item to when the step has no `as`.
const defaultItem = "item"

// parser walks one file's YAML nodes, so every problem carries the line of what is wrong, and
// carries on after each problem so that all of them are reported.
type parser struct {
	file     string
	cat      Catalogue
	problems []Problem
	nameLine int

	book     *Playbook
	defaults Step     // what every step starts from: the retry, timeout and on_error of `defaults:`
	whenRefs []ref    // steps read by `when`, checked once every step is known
	varRefs  []useRef // vars read anywhere but in vars, checked once every var is known
	varNames []string // every var declared, compiled or not
	values   int      // the values compiled so far, against a file whose aliases multiply them
}

// maxValues bounds the values one file may hold once its YAML aliases are followed: a few
// lines of anchors can stand for billions of values.
const maxValues = 100_000

func (p *parser) addf(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// ref is a name an expression reads (steps.<name>, vars.<name>) and the line it is read on.
type ref struct {
	name string
	line int
}

// useRef is a ref and who made it, for the message.
type useRef struct {
	ref
	label string
}

// refSet collects what a value's expressions read.
type refSet struct{ steps, vars []ref }

func (rs *refSet) add(prog *program, line int) {
	for _, id := range refs(prog, "steps") {
		rs.steps = append(rs.steps, ref{id, line})
	}
	for _, name := range refs(prog, "vars") {
		rs.vars = append(rs.vars, ref{name, line})
	}
}

// useVars defers the check of the vars an expression reads until every var is known.
func (p *parser) useVars(rs *refSet, label string) {
	for _, r := range rs.vars {
		p.varRefs = append(p.varRefs, useRef{r, label})
	}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError reports a syntax error at the line yaml gives; yaml leaves the line out when it
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
	p.book = &Playbook{File: p.file}
	p.defaults = Step{Retry: actions.DefaultRetryPolicy(), OnError: OnErrorStop}
	topFields.read(p, root, "", p.book)
	p.checkRefs()
	return p.book
}

// checkRefs checks what expressions outside the steps and vars read, now that every step and
// var is known.
func (p *parser) checkRefs() {
	for _, r := range p.whenRefs {
		if slices.ContainsFunc(p.book.Steps, func(s *Step) bool { return s.ID == r.name }) {
			p.addf(r.line, "when: refers to step %q, which runs later", r.name)
		} else {
			p.addf(r.line, "when: refers to unknown step %q", r.name)
		}
	}
	for _, r := range p.varRefs {
		if !slices.Contains(p.varNames, r.name) {
			p.addf(r.line, "%s: refers to unknown var %q%s", r.label, r.name, suggestion(r.name, p.varNames))
		}
	}
}

// suggestion is `; did you mean "x"?` for the nearest candidate, or nothing.
func suggestion(name string, candidates []string) string {
	if s := closest(name, candidates); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}

// parseConcurrencyKey compiles `concurrency_key`, a value rendered like a step input before any
// step runs: it may read the alert and vars, not steps.
func (p *parser) parseConcurrencyKey(v *yaml.Node) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || strings.TrimSpace(v.Value) == "" {
		p.addf(v.Line, "concurrency_key must be a string, e.g. ${{ alert.endpointId }}")
		return
	}
	var rs refSet
	cv, ok := p.compileValue(v, "concurrency_key", scope{}, &rs)
	if !ok {
		return
	}
	p.useVars(&rs, "concurrency_key")
	if len(rs.steps) > 0 {
		p.addf(v.Line, "concurrency_key: refers to step %q; the key is decided before any step runs", rs.steps[0].name)
		return
	}
	p.book.concurrencyKey = &valueExpr{cv.val}
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
			p.addf(k.Line, "%sunknown key %q%s", prefix, k.Value, suggestion(k.Value, known))
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

// oneOf reads a scalar that must be one of a few words.
func (p *parser) oneOf(n *yaml.Node, what string, choices []string) (string, bool) {
	s, ok := p.str(n, what)
	if !ok {
		return "", false
	}
	if !slices.Contains(choices, s) {
		p.addf(n.Line, "%s must be %s, got %q", what, orList(choices), s)
		return "", false
	}
	return s, true
}

func (p *parser) parseName(v *yaml.Node) {
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
	case name == decisionsName:
		p.addf(v.Line, "name %q is reserved: approval decisions arrive on soar.approvals.%s", name, name)
	default:
		p.book.Name = name
	}
}

func (p *parser) parseOn(v *yaml.Node) {
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
		p.book.On = append(p.book.On, f)
	}
}

func (p *parser) parseWhen(v *yaml.Node) {
	src, ok := p.exprSource(v, "when")
	if !ok {
		return
	}
	prog, err := compile(src, scope{}, true)
	if err != nil {
		p.addf(exprErrorLine(lineOf(v), err), "when: %s", exprMessage(err))
		return
	}
	p.book.when = prog
	var rs refSet
	rs.add(prog, v.Line)
	p.whenRefs = rs.steps
	p.useVars(&rs, "when")
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

// parseVars compiles `vars:`, each value like an input; a var may read the alert and the vars
// declared before it, and no step, since vars are evaluated before any step runs.
func (p *parser) parseVars(v *yaml.Node) {
	if v.Tag == "!!null" {
		return // `vars:` with everything commented out
	}
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "vars must be a mapping of names to values")
		return
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		p.varNames = append(p.varNames, v.Content[i].Value)
	}
	var before []string // the vars declared above the one being compiled
	lits := map[string]any{}
	allLiteral := true
	p.pairs(v, nil, "vars: ", func(k, val *yaml.Node) {
		label := "vars." + k.Value
		defer func() { before = append(before, k.Value) }()
		var rs refSet
		cv, ok := p.compileValue(val, label, scope{}, &rs)
		if !ok {
			return
		}
		for _, r := range rs.steps {
			p.addf(r.line, "%s: refers to step %q; vars are evaluated before any step runs", label, r.name)
		}
		for _, r := range rs.vars {
			switch {
			case r.name == k.Value:
				p.addf(r.line, "%s: refers to itself", label)
			case slices.Contains(before, r.name):
			case slices.Contains(p.varNames, r.name):
				p.addf(r.line, "%s: refers to var %q, which is declared later", label, r.name)
			default:
				p.addf(r.line, "%s: refers to unknown var %q%s", label, r.name, suggestion(r.name, p.varNames))
			}
		}
		p.book.vars = append(p.book.vars, varDef{name: k.Value, val: cv.val})
		if cv.isLit {
			lits[k.Value] = cv.lit
		} else {
			allLiteral = false
		}
	})
	if allLiteral && len(lits) > 0 {
		p.book.Vars = lits
	}
}

// parseDefaults reads `defaults:` into the step every step starts from.
func (p *parser) parseDefaults(v *yaml.Node) {
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "defaults must be a mapping of %s", strings.Join(defaultFields.keys(), ", "))
		return
	}
	defaultFields.read(p, v, "defaults: ", &stepDraft{step: &p.defaults, label: "defaults"})
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
	refs  []ref  // steps its expressions read

	node        *yaml.Node // the step's mapping
	known       bool       // its action is in the catalogue
	hasForeach  bool       // it has a foreach key, whether or not its value compiled
	asLine      int        // the line of its `as`, 0 when it has none
	initialLine int        // the line of its retry.initial_interval, 0 when not set there
}

// scope is what the step's `if` and `with` may read beyond the run: the item, under foreach.
func (d *stepDraft) scope() scope {
	if !d.hasForeach {
		return scope{}
	}
	return scope{item: d.step.As}
}

func (p *parser) parseSteps(v *yaml.Node) {
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
		d := p.parseStep(resolve(n), i)
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
			at, ok := index[r.name]
			switch {
			case !ok:
				p.addf(r.line, "%s: refers to unknown step %q%s", d.label, r.name, suggestion(r.name, ids))
			case at == i:
				p.addf(r.line, "%s: refers to itself", d.label)
			case at > i:
				p.addf(r.line, "%s: refers to step %q, which runs later", d.label, r.name)
			}
		}
		p.book.Steps = append(p.book.Steps, d.step)
	}
}

func (p *parser) parseStep(n *yaml.Node, i int) *stepDraft {
	if n.Kind != yaml.MappingNode {
		p.addf(n.Line, "step %d must be a mapping with id and action", i+1)
		return nil
	}
	s := &Step{Line: n.Line, Retry: p.defaults.Retry, OnError: p.defaults.OnError, book: p.book}
	d := &stepDraft{step: s, label: fmt.Sprintf("step %d", i+1), node: n}
	// Every message about the step names it, including those about keys before its id.
	for j := 0; j+1 < len(n.Content); j += 2 {
		if k, v := n.Content[j], resolve(n.Content[j+1]); k.Value == "id" && v.Kind == yaml.ScalarNode && v.Value != "" {
			d.label = fmt.Sprintf("step %q", v.Value)
			break
		}
	}
	found := stepFields.read(p, n, d.label+": ", d)
	if d.asLine != 0 && !d.hasForeach {
		p.addf(d.asLine, "%s: as names the item of foreach, and the step has no foreach", d.label)
	}
	if !found["with"] {
		p.checkInputs(d, nil, n.Line, nil)
	}
	return d
}

func (p *parser) parseStepID(d *stepDraft, _, v *yaml.Node) {
	id, ok := p.str(v, d.label+": id")
	if !ok {
		return
	}
	if !stepIDRE.MatchString(id) {
		p.addf(v.Line, "step id %q must match [A-Za-z_][A-Za-z0-9_]*, as expressions read it as steps.<id>", id)
	}
	d.step.ID = id
}

func (p *parser) parseAction(d *stepDraft, _, v *yaml.Node) {
	name, ok := p.str(v, d.label+": action")
	if !ok {
		return
	}
	s := d.step
	s.Action = name
	if s.spec, d.known = p.cat.Spec(name); !d.known {
		if sug := p.cat.Suggest(name); sug != "" {
			p.addf(v.Line, "%s: unknown action %q; did you mean %s?", d.label, name, sug)
		} else {
			p.addf(v.Line, "%s: unknown action %q", d.label, name)
		}
	}
}

// parseForeach compiles `foreach:`, a list or a `${{ }}` that yields one. It is evaluated
// before the step's items exist, so it reads what an `if` reads, but no item.
func (p *parser) parseForeach(d *stepDraft, _, v *yaml.Node) {
	d.hasForeach = true
	d.step.As = defaultItem
	label := d.label + ": foreach"
	isTemplate := v.Kind == yaml.ScalarNode && v.Tag == "!!str" && strings.Contains(v.Value, "${{")
	if v.Kind != yaml.SequenceNode && !isTemplate {
		p.addf(v.Line, "%s must be a list, or ${{ }} yielding one", label)
		return
	}
	var rs refSet
	cv, ok := p.compileValue(v, label, scope{}, &rs)
	if !ok {
		return
	}
	d.refs = append(d.refs, rs.steps...)
	p.useVars(&rs, d.label)
	switch t := cv.val.(type) {
	case text:
		p.addf(v.Line, "%s must be a list, or ${{ }} yielding one; text around ${{ }} makes a string", label)
		return
	case whole:
		if typ := t.prog.prog.Node().Type(); typ != nil {
			switch typ.Kind() {
			case reflect.Interface, reflect.Slice, reflect.Array:
			default:
				p.addf(v.Line, "%s must yield a list, got %s", label, typ)
				return
			}
		}
		d.step.foreachSrc = t.prog.src
	default:
		d.step.foreachSrc = "the list"
	}
	d.step.foreach = cv.val
}

// reservedItemNames are the names an `as` may not take: what the environment, expr's builtins,
// the helpers and expr's own words already mean.
var reservedItemNames = func() []string {
	var names []string
	t := reflect.TypeFor[exprEnv]()
	for i := range t.NumField() {
		names = append(names, t.Field(i).Tag.Get("expr"))
	}
	for _, f := range builtin.Builtins {
		names = append(names, f.Name)
	}
	for _, h := range helpers {
		names = append(names, h.name)
	}
	return append(names, "true", "false", "nil", "in", "not", "and", "or", "matches", "contains",
		"startsWith", "endsWith", "let", "if", "else", "env", "$env")
}()

func (p *parser) parseAs(d *stepDraft, _, v *yaml.Node) {
	name, ok := p.str(v, d.label+": as")
	if !ok {
		return
	}
	d.asLine = v.Line
	switch {
	case !stepIDRE.MatchString(name):
		p.addf(v.Line, "%s: as %q must match [A-Za-z_][A-Za-z0-9_]*, as expressions read it by name", d.label, name)
	case slices.Contains(reservedItemNames, name):
		p.addf(v.Line, "%s: as %q is a name expressions already have; pick another", d.label, name)
	default:
		if d.hasForeach {
			d.step.As = name
		}
	}
}

func (p *parser) parseIf(d *stepDraft, _, v *yaml.Node) {
	src, ok := p.exprSource(v, d.label+": if")
	if !ok {
		return
	}
	prog, err := compile(src, d.scope(), true)
	if err != nil {
		p.addf(exprErrorLine(lineOf(v), err), "%s: if: %s", d.label, exprMessage(err))
		return
	}
	d.step.cond = prog
	var rs refSet
	rs.add(prog, v.Line)
	d.refs = append(d.refs, rs.steps...)
	p.useVars(&rs, d.label)
}

// parseWith compiles a step's inputs and, when the action is known, checks them against its
// spec: names, the type and limits of every literal, then (checkInputs) required inputs and,
// when every input is a literal, how they fit together.
func (p *parser) parseWith(d *stepDraft, key, v *yaml.Node) {
	s := d.step
	before := len(p.problems)
	given := map[string]bool{}
	literals := actions.Inputs{}
	allLiteral := true
	switch {
	case v.Tag == "!!null":
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
			var rs refSet
			cv, ok := p.compileValue(val, label, d.scope(), &rs)
			if !ok {
				return
			}
			d.refs = append(d.refs, rs.steps...)
			p.useVars(&rs, d.label)
			s.with = append(s.with, input{name: k.Value, val: cv.val})
			if !cv.isLit {
				allLiteral = false
			} else {
				literals[k.Value] = cv.lit
			}
			if !d.known {
				return
			}
			decl, known := s.spec.Input(k.Value)
			if !known {
				p.addf(k.Line, "%s: action %s has no input %q%s", d.label, s.Action, k.Value, suggestion(k.Value, names))
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
	if !allLiteral || len(p.problems) != before {
		literals = nil // the cross-check needs every input, each of them sound
	}
	p.checkInputs(d, given, key.Line, literals)
}

// checkInputs checks what only the whole `with` can tell: every required input given, and,
// when all are literals (literals is not nil) and nothing else is wrong, the action's own
// cross-check.
func (p *parser) checkInputs(d *stepDraft, given map[string]bool, line int, literals actions.Inputs) {
	if !d.known {
		return
	}
	s := d.step
	before := len(p.problems)
	for _, decl := range s.spec.Inputs {
		if decl.Required && !given[decl.Name] {
			p.addf(line, "%s: missing required input %q of %s", d.label, decl.Name, s.Action)
		}
	}
	if literals != nil && s.spec.Validate != nil && len(p.problems) == before {
		if _, err := s.spec.Check(literals); err != nil {
			p.addf(line, "%s: %s", d.label, strings.TrimPrefix(err.Error(), s.spec.Name+": invalid inputs: "))
		}
	}
}

// compiled is one compiled value; lit is its plain Go value when it holds no expression
// anywhere, so that it can be type-checked at load.
type compiled struct {
	val   value
	lit   any
	isLit bool
}

// compileValue compiles a value as `with` values are: exactly `${{ expr }}` takes the
// expression's type, text with `${{ }}` in it interpolates, anything else is a literal; maps and
// lists value by value. What its expressions read goes into rs.
func (p *parser) compileValue(n *yaml.Node, label string, sc scope, rs *refSet) (compiled, bool) {
	n = resolve(n)
	if p.values++; p.values > maxValues {
		if p.values == maxValues+1 {
			p.addf(n.Line, "%s: the file holds more than %d values once its yaml aliases are followed", label, maxValues)
		}
		return compiled{}, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := mapping{}
		lit := map[string]any{}
		ok, isLit := true, true
		p.pairs(n, nil, label+": ", func(k, v *yaml.Node) {
			c, cok := p.compileValue(v, label, sc, rs)
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
			c, cok := p.compileValue(e, label, sc, rs)
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
			return p.compileTemplate(n, label, sc, rs)
		}
		v, ok := p.scalar(n)
		return compiled{val: literal{v}, lit: v, isLit: true}, ok
	}
	p.addf(n.Line, "%s: unsupported yaml value", label)
	return compiled{}, false
}

func (p *parser) compileTemplate(n *yaml.Node, label string, sc scope, rs *refSet) (compiled, bool) {
	line := n.Line
	if lineOf(n).block {
		line++
	}
	lits, exprs, err := splitTemplate(n.Value)
	if err != nil {
		p.addf(line, "%s: %v", label, err)
		return compiled{}, false
	}
	progs := make([]*program, 0, len(exprs))
	ok := true
	for _, src := range exprs {
		prog, err := compile(src, sc, false)
		if err != nil {
			p.addf(line, "%s: %s", label, exprMessage(err))
			ok = false
			continue
		}
		progs = append(progs, prog)
		rs.add(prog, n.Line)
	}
	if !ok {
		return compiled{}, false
	}
	if len(progs) == 1 && strings.TrimSpace(lits[0]) == "" && strings.TrimSpace(lits[1]) == "" {
		return compiled{val: whole{progs[0]}}, true
	}
	return compiled{val: text{lits: lits, progs: progs}}, true
}

func (p *parser) parseRetry(d *stepDraft, _, v *yaml.Node) {
	if v.Kind != yaml.MappingNode {
		p.addf(v.Line, "%s: retry must be a mapping of %s", d.label, strings.Join(retryFields.keys(), ", "))
		return
	}
	d.initialLine = 0
	found := retryFields.read(p, v, d.label+": retry: ", d)
	r := d.step.Retry
	// Only a contradiction within one mapping: against an interval from the defaults, the one
	// set here wins.
	if found["initial_interval"] && found["max_interval"] && d.initialLine != 0 &&
		r.MaxInterval > 0 && r.MaxInterval < r.InitialInterval {
		p.addf(d.initialLine, "%s: retry.initial_interval %s is longer than max_interval %s", d.label, r.InitialInterval, r.MaxInterval)
	}
}

func (p *parser) parseMaxAttempts(d *stepDraft, k, v *yaml.Node) {
	what := d.label + ": retry." + k.Value
	n, err := strconv.Atoi(v.Value)
	switch {
	case v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil:
		p.addf(v.Line, "%s must be a whole number, got %q", what, v.Value)
	case n < 1:
		p.addf(v.Line, "%s must be at least 1, got %d", what, n)
	default:
		d.step.Retry.MaxAttempts = n
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
