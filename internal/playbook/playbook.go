// Package playbook is riposte's playbook file format: it loads and validates playbook files
// (every problem with its file:line), compiles their expr expressions once, matches alerts
// against them and renders step inputs. It knows nothing of NATS or HTTP.
package playbook

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/riposte-soar/riposte/internal/actions"
)

// Problem is one thing wrong with a playbook file, at the line where it is wrong.
type Problem struct {
	File string
	Line int // 0 when the problem is with the file as a whole (it could not be read)
	Msg  string
}

func (p Problem) String() string {
	if p.Line <= 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

// Problems is every problem found while loading, so an operator fixes them in one pass.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sort orders by file then line; within one line the order found is kept, which follows the
// file's own order of keys.
func (ps Problems) sort() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return a.Line - b.Line
	})
}

// Catalogue is what the loader needs of the action registry; *actions.Registry satisfies it.
type Catalogue interface {
	Spec(name string) (actions.Spec, bool)
	Suggest(name string) string
}

// Playbook is one loaded, validated playbook file. It is immutable after loading and safe for
// concurrent use.
type Playbook struct {
	Name        string
	Description string
	File        string   // the path it was loaded from
	On          []string // NATS subject filters
	Steps       []*Step
	// Vars holds the `vars:` when every one is a literal; nil when the file has none or when
	// any is an expression. EvalVars gives every var's value for one run, whichever they are.
	Vars map[string]any
	// Shadow is `mode: shadow`: the playbook runs its conditions and renders its inputs but
	// must call no vendor; its outcome says "shadowed".
	Shadow bool

	when           *program   // nil: every alert on a matching subject runs the playbook
	concurrencyKey *valueExpr // nil: runs may overlap
	vars           []varDef   // in the order declared
}

// varDef is one declared var: a value rendered like an input, once per run.
type varDef struct {
	name string
	val  value
}

// HasVars says whether the playbook has `vars:`; EvalVars of one without gives an empty map.
func (p *Playbook) HasVars() bool { return len(p.vars) > 0 }

// noEntries and noSteps are what a `when` reads as vars and steps where its Env has none. No
// expression can change a map, and a `when` gives out only a bool, so no caller sees them.
var (
	noEntries = map[string]any{}
	noSteps   = map[string]StepState{}
)

// HasConcurrencyKey says whether runs of the playbook are serialised per key.
func (p *Playbook) HasConcurrencyKey() bool { return p.concurrencyKey != nil }

// ConcurrencyKey renders the playbook's `concurrency_key` for one run: runs with the same key
// must not overlap. "" means the run needs no lock (no key, or it rendered empty or null).
func (p *Playbook) ConcurrencyKey(env *Env) (string, error) {
	if p.concurrencyKey == nil {
		return "", nil
	}
	r, err := p.prepare(env, nil)
	if err != nil {
		return "", err
	}
	defer r.release()
	v, err := p.concurrencyKey.val.render(r)
	if err != nil {
		return "", fmt.Errorf("playbook %q concurrency_key: %w", p.Name, err)
	}
	if v == nil {
		return "", nil
	}
	return fmt.Sprint(v), nil
}

// MatchesSubject reports whether subject matches one of the playbook's `on` filters, with NATS
// wildcard semantics: '*' is exactly one token, '>' one or more trailing tokens. To find the
// playbooks of one subject among many, a Set asks its index once.
func (p *Playbook) MatchesSubject(subject string) bool {
	for _, f := range p.On {
		if server.SubjectMatchesFilter(subject, f) {
			return true
		}
	}
	return false
}

// EvalVars evaluates the playbook's `vars:` for one run, in the order they are declared, each
// seeing the ones before it as vars.<name>. The engine calls it once per run, before When,
// and puts the result in Env.Vars, so every expression of the run sees the same values.
// env.Vars itself is not read. The map is the caller's; it is never nil.
func (p *Playbook) EvalVars(env *Env) (map[string]any, error) {
	out := make(map[string]any, len(p.vars))
	if len(p.vars) == 0 {
		return out, nil
	}
	r := env.renderer(out, nil)
	defer r.release()
	for _, v := range p.vars {
		val, err := v.val.render(r)
		if err != nil {
			return nil, fmt.Errorf("playbook %q var %q: %w", p.Name, v.name, err)
		}
		out[v.name] = val
	}
	return out, nil
}

// varsFor is what expressions see as `vars` in env: Env.Vars when the caller set it, else the
// playbook's own, evaluated now when any is an expression.
func (p *Playbook) varsFor(env *Env) (map[string]any, error) {
	switch {
	case env != nil && env.Vars != nil:
		return env.Vars, nil
	case len(p.vars) == 0 || p.Vars != nil:
		return p.Vars, nil
	}
	return p.EvalVars(env)
}

// prepare readies the evaluation of one of the playbook's expressions in env.
func (p *Playbook) prepare(env *Env, item any) (*renderer, error) {
	vars, err := p.varsFor(env)
	if err != nil {
		return nil, err
	}
	return env.renderer(vars, item), nil
}

// When evaluates the playbook's `when`; it is true when the playbook has none.
func (p *Playbook) When(env *Env) (bool, error) {
	if p.when == nil {
		return true, nil
	}
	vars, err := p.varsFor(env)
	if err != nil {
		return false, err
	}
	// After the vars, whose errors the guard must not hide, but before anything is readied.
	if g := p.when.guard; g != nil && env != nil && !g.mayHold(env.Alert) {
		return false, nil
	}
	r := env.renderer(vars, nil)
	defer r.release()
	// A `when` comes before any step and its result is a bool, so it may read vars and steps
	// that are shared and empty where env has none: the engine evaluates every playbook's
	// `when` in one Env with neither, and makes a run's own only for one that holds.
	if r.env.Vars == nil {
		r.env.Vars = noEntries
	}
	if r.env.Steps == nil {
		r.env.Steps = noSteps
	}
	ok, err := r.runBool(p.when)
	if err != nil {
		return false, fmt.Errorf("playbook %q when %s", p.Name, err)
	}
	return ok, nil
}

// Vendors lists the distinct vendors of the playbook's actions, so the worker can insist on
// their configuration at start-up.
func (p *Playbook) Vendors() []string {
	var vs []string
	for _, s := range p.Steps {
		if v := s.spec.Vendor; v != "" && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs
}

// OnError says what a failed step does to the rest of the run.
type OnError string

const (
	OnErrorStop     OnError = "stop"     // the remaining steps are skipped
	OnErrorContinue OnError = "continue" // the remaining steps run; the playbook still fails
)

// Step is one step of a playbook, compiled.
type Step struct {
	ID      string
	Action  string
	Line    int // line of the step in its file, for messages about it at run time
	Retry   actions.RetryPolicy
	OnError OnError
	// As is the name each item of the step's `foreach:` is bound to in its `if` and `with`
	// ("item" unless `as:` says); "" when the step has no foreach.
	As string
	// Approval, when set, gates the step on people's decision.
	Approval *Approval
	// Batch, when set, coalesces the step's vendor call with the same action's steps of other
	// alerts (`batch:`).
	Batch *actions.BatchPolicy

	book       *Playbook
	spec       actions.Spec
	foreach    value  // nil when the step runs once
	foreachSrc string // the foreach expression, for messages
	cond       *program
	with       []input // sorted by name
}

// HasForEach says whether the step runs once per item of its `foreach:` (see Items).
func (s *Step) HasForEach() bool { return s.foreach != nil }

type input struct {
	name string
	val  value
}

// ShouldRun evaluates the step's `if`; it is true when the step has none. For a step with
// foreach, ShouldRunItem decides each item.
func (s *Step) ShouldRun(env *Env) (bool, error) { return s.ShouldRunItem(env, nil) }

// ShouldRunItem evaluates the step's `if` for one item of its foreach, bound to s.As.
func (s *Step) ShouldRunItem(env *Env, item any) (bool, error) {
	if s.cond == nil {
		return true, nil
	}
	r, err := s.book.prepare(env, item)
	if err != nil {
		return false, err
	}
	defer r.release()
	ok, err := r.runBool(s.cond)
	if err != nil {
		return false, fmt.Errorf("playbook %q step %q if %s", s.book.Name, s.ID, err)
	}
	return ok, nil
}

// Render evaluates the step's `with` into the action's inputs. Each call returns fresh maps and
// lists, so callers may keep or change them. For a step with foreach, RenderItem renders each
// item's inputs.
func (s *Step) Render(env *Env) (actions.Inputs, error) { return s.RenderItem(env, nil) }

// RenderItem evaluates the step's `with` for one item of its foreach, bound to s.As.
func (s *Step) RenderItem(env *Env, item any) (actions.Inputs, error) {
	r, err := s.book.prepare(env, item)
	if err != nil {
		return nil, err
	}
	defer r.release()
	in := make(actions.Inputs, len(s.with))
	for _, w := range s.with {
		v, err := w.val.render(r)
		if err != nil {
			return nil, fmt.Errorf("step %q input %q: %w", s.ID, w.name, err)
		}
		in[w.name] = v
	}
	return in, nil
}

// Items evaluates the step's `foreach:` into the items it runs for, in order: nil and no error
// when the step has no foreach, a non-nil (possibly empty) list when it has one, and an error
// when the value is not a list (a missing field is nil, which is not a list: write
// `${{ alert.hosts ?? [] }}` where none is a normal case).
func (s *Step) Items(env *Env) ([]any, error) {
	if s.foreach == nil {
		return nil, nil
	}
	r, err := s.book.prepare(env, nil)
	if err != nil {
		return nil, err
	}
	defer r.release()
	v, err := s.foreach.render(r)
	if err != nil {
		return nil, fmt.Errorf("playbook %q step %q foreach: %w", s.book.Name, s.ID, err)
	}
	items, ok := asList(v)
	if !ok {
		return nil, fmt.Errorf("playbook %q step %q foreach %s: expected a list, got %s", s.book.Name, s.ID, quoteExpr(s.foreachSrc), kindOf(v))
	}
	return items, nil
}

// asList returns v's elements when it is a list of any element type; the list is fresh.
func asList(v any) ([]any, bool) {
	if l, ok := v.([]any); ok {
		return slices.Clone(l), true
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || (rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array) {
		return nil, false
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}

// kindOf names what a value is, for messages: nil, string, number, bool, object, list.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case string:
		return "string"
	case bool:
		return "bool"
	case int, int64, int32, uint, uint64, float64, float32:
		return "number"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// StepState is what a step that has run left behind, as expressions see it under
// `steps.<id>`.
type StepState struct {
	Status string `expr:"status"` // succeeded, failed or skipped
	// Output is the action's output (a map[string]any) for a step that runs once, and the list
	// of every item's output, in item order, for a step with foreach.
	Output any    `expr:"output"`
	Error  string `expr:"error"`
}

// Env is what expressions see while one alert runs through one playbook.
type Env struct {
	Alert   map[string]any
	Subject string
	Headers map[string]string
	AlertID string
	// Steps holds the steps run so far, by id. A step that is absent (not run yet, which the
	// loader already forbids referring to, or left out by the engine) reads as the zero
	// StepState: `steps.x.status` is "" and `steps.x.output.y` is nil, not an error, so an `if`
	// on the output of a skipped step stays a plain comparison with nil.
	Steps map[string]StepState
	// Vars is what expressions see as `vars`: set it to the playbook's EvalVars once per run.
	// Nil means the playbook's own, evaluated at every call when any var is an expression.
	Vars map[string]any
	// Now is what now() returns and since() measures from, so a run sees one instant and tests
	// control it; the zero time means the wall clock.
	Now time.Time

	// kept is the renderer and expression environment of the last evaluation in this Env,
	// reused by the next: the engine evaluates every playbook's `when` for one alert in one
	// Env, and each would otherwise allocate its own. busy is set while an evaluation uses
	// them; one that finds it set (the Env used by two goroutines at once) makes its own.
	kept *keptRenderer
	busy atomic.Bool
}

// keptRenderer is what Env.renderer keeps between evaluations.
type keptRenderer struct {
	r   renderer
	env exprEnv
	now time.Time // the Env's Now that env.Now and env.Since were made for
}

// renderer readies one evaluation in e, against e's fields as they are now and vars and item:
// e's kept renderer when no other evaluation holds it, else a new one. release hands it back.
func (e *Env) renderer(vars map[string]any, item any) *renderer {
	if e == nil || !e.busy.CompareAndSwap(false, true) {
		return newRenderer(e.exprEnv(vars, item))
	}
	k := e.kept
	if k == nil || k.now != e.Now { // ==, not Equal: now() returns Now itself, with its location
		if k == nil {
			k = new(keptRenderer)
			k.r = renderer{env: &k.env, of: e}
			k.env.Fetch = fetchField
			e.kept = k
		}
		c := clock(e.Now)
		k.env.Now, k.env.Since, k.now = c.now, c.since, e.Now
	}
	k.env.Alert, k.env.Subject, k.env.Headers, k.env.AlertID = e.Alert, e.Subject, e.Headers, e.AlertID
	k.env.Steps, k.env.Vars, k.env.Item = e.Steps, vars, item
	if k.r.vm == nil {
		k.r.vm = vmPool.Get().(*vm.VM)
	}
	return &k.r
}

// Done hands back what e keeps between evaluations (a VM, to the pool shared by every Env). e
// still works after it, making them again; an Env never Done only leaves its VM to the garbage
// collector.
func (e *Env) Done() {
	if e == nil || e.kept == nil || !e.busy.CompareAndSwap(false, true) {
		return
	}
	if e.kept.r.vm != nil {
		vmPool.Put(e.kept.r.vm)
		e.kept.r.vm = nil
	}
	e.busy.Store(false)
}

// exprEnv is the expression environment's shape: expressions are type-checked against it at
// load, so `alrt.type` or `steps.x.outptu` fail there and not on the first alert.
type exprEnv struct {
	Alert   map[string]any                   `expr:"alert"`
	Subject string                           `expr:"subject"`
	Headers map[string]string                `expr:"headers"`
	AlertID string                           `expr:"alert_id"`
	Steps   map[string]StepState             `expr:"steps"`
	Vars    map[string]any                   `expr:"vars"`
	Now     func() time.Time                 `expr:"now"` // shadows expr's builtin now(), which reads the wall clock
	Since   func(any) (time.Duration, error) `expr:"since"`
	// Item is the current item of a step's foreach. Its name cannot be written in an
	// expression: the loader renames the step's `as` name to it, in that step only.
	Item any `expr:"foreach item"`
	// Fetch is fetchField, which `x.name` calls once compile's fetchPatch has rewritten it.
	Fetch func(from, name any) any `expr:"fetch field"`
}

// itemName is exprEnv.Item's name in expressions, after the loader's renaming.
const itemName = "foreach item"

func (e *Env) exprEnv(vars map[string]any, item any) *exprEnv {
	if e == nil {
		e = &Env{}
	}
	c := clock(e.Now)
	return &exprEnv{
		Alert:   e.Alert,
		Subject: e.Subject,
		Headers: e.Headers,
		AlertID: e.AlertID,
		Steps:   e.Steps,
		Vars:    vars,
		Now:     c.now,
		Since:   c.since,
		Item:    item,
		Fetch:   fetchField,
	}
}
