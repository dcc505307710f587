// Package playbook is riposte's playbook file format: it loads and validates playbook files
// (every problem with its file:line), compiles their expr expressions once, matches alerts
// against them and renders step inputs. It knows nothing of NATS or HTTP.
package playbook

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"

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
	Vars        map[string]any // the `vars:` literals; nil when the file has none

	when           *vm.Program // nil: every alert on a matching subject runs the playbook
	filters        [][]string  // On, split into tokens once
	concurrencyKey value       // nil: runs may overlap
}

// HasConcurrencyKey says whether runs of the playbook are serialised per key.
func (p *Playbook) HasConcurrencyKey() bool { return p.concurrencyKey != nil }

// ConcurrencyKey renders the playbook's `concurrency_key` for one run: runs with the same key
// must not overlap. "" means the run needs no lock (no key, or it rendered empty or null).
func (p *Playbook) ConcurrencyKey(env *Env) (string, error) {
	if p.concurrencyKey == nil {
		return "", nil
	}
	r := renderer{env: env.exprEnv(p.Vars), vm: getVM()}
	defer putVM(r.vm)
	v, err := p.concurrencyKey.render(&r)
	if err != nil {
		return "", fmt.Errorf("playbook %q concurrency_key: %w", p.Name, err)
	}
	if v == nil {
		return "", nil
	}
	return fmt.Sprint(v), nil
}

// MatchesSubject reports whether subject matches one of the playbook's `on` filters, with NATS
// wildcard semantics: '*' is exactly one token, '>' one or more trailing tokens.
func (p *Playbook) MatchesSubject(subject string) bool {
	for _, f := range p.filters {
		if matchSubject(f, subject) {
			return true
		}
	}
	return false
}

// When evaluates the playbook's `when`; it is true when the playbook has none.
func (p *Playbook) When(env *Env) (bool, error) {
	if p.when == nil {
		return true, nil
	}
	ok, err := runBool(p.when, env.exprEnv(p.Vars))
	if err != nil {
		return false, fmt.Errorf("playbook %q when: %w", p.Name, err)
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

	spec actions.Spec
	cond *vm.Program // the `if`; nil when the step always runs
	with []input     // sorted by name
	vars map[string]any
}

type input struct {
	name string
	val  value
}

// ShouldRun evaluates the step's `if`; it is true when the step has none.
func (s *Step) ShouldRun(env *Env) (bool, error) {
	if s.cond == nil {
		return true, nil
	}
	ok, err := runBool(s.cond, env.exprEnv(s.vars))
	if err != nil {
		return false, fmt.Errorf("step %q if: %w", s.ID, err)
	}
	return ok, nil
}

// Render evaluates the step's `with` into the action's inputs. Each call returns fresh maps and
// lists, so callers may keep or change them.
func (s *Step) Render(env *Env) (actions.Inputs, error) {
	r := renderer{env: env.exprEnv(s.vars), vm: getVM()}
	defer putVM(r.vm)
	in := make(actions.Inputs, len(s.with))
	for _, w := range s.with {
		v, err := w.val.render(&r)
		if err != nil {
			return nil, fmt.Errorf("step %q input %q: %w", s.ID, w.name, err)
		}
		in[w.name] = v
	}
	return in, nil
}

// StepState is what a step that has run left behind, as expressions see it under
// `steps.<id>`.
type StepState struct {
	Status string         `expr:"status"` // succeeded, failed or skipped
	Output map[string]any `expr:"output"`
	Error  string         `expr:"error"`
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
	// Vars overrides the playbook's `vars:` when set; nil means the playbook's own.
	Vars map[string]any
	// Now is what now() returns, so a run sees one instant and tests control it; the zero time
	// means the wall clock.
	Now time.Time
}

// exprEnv is the expression environment's shape: expressions are type-checked against it at
// load, so `alrt.type` or `steps.x.outptu` fail there and not on the first alert.
type exprEnv struct {
	Alert   map[string]any       `expr:"alert"`
	Subject string               `expr:"subject"`
	Headers map[string]string    `expr:"headers"`
	AlertID string               `expr:"alert_id"`
	Steps   map[string]StepState `expr:"steps"`
	Vars    map[string]any       `expr:"vars"`
	Now     func() time.Time     `expr:"now"` // shadows expr's builtin now(), which reads the wall clock
}

func (e *Env) exprEnv(vars map[string]any) *exprEnv {
	if e == nil {
		e = &Env{}
	}
	if e.Vars != nil {
		vars = e.Vars
	}
	now := e.Now
	clock := time.Now
	if !now.IsZero() {
		clock = func() time.Time { return now }
	}
	return &exprEnv{
		Alert:   e.Alert,
		Subject: e.Subject,
		Headers: e.Headers,
		AlertID: e.AlertID,
		Steps:   e.Steps,
		Vars:    vars,
		Now:     clock,
	}
}
