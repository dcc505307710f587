// Package actions holds what every response action is: its declared inputs, the registry the
// playbook loader checks steps against, the error classes, and the dispatcher that owns retries.
package actions

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Type is the kind of value an input accepts after a playbook's `with:` has been rendered.
type Type int

const (
	String     Type = iota // a JSON string
	StringList             // a list of strings; a single string is accepted as a one-element list
	Int                    // a whole number
	Bool                   // true or false
	Object                 // a JSON object
	Any                    // anything JSON can hold
)

func (t Type) String() string {
	switch t {
	case String:
		return "string"
	case StringList:
		return "list of strings"
	case Int:
		return "integer"
	case Bool:
		return "bool"
	case Object:
		return "object"
	default:
		return "any"
	}
}

// Input declares one parameter of an action. Its limits are checked on literal values when
// playbooks load and on rendered values once before each call; a zero limit means none.
type Input struct {
	Name     string
	Type     Type
	Required bool
	Doc      string
	// Enum lists the accepted values of a String input.
	Enum []string
	// Choices are the friendly names of an Int input's values (`status: closed` for 3). The
	// numbers are accepted too; with Choices set, no other number is.
	Choices []Choice
	// Min and Max bound an Int input, inclusive, when Bounded is set.
	Min, Max int64
	Bounded  bool
	// MaxLen caps a String input, or each item of a StringList, in characters.
	MaxLen int
	// MaxItems caps the length of a StringList.
	MaxItems int
	// Default documents what the action sends when the input is absent; the action applies it.
	Default string
	// Verify checks a value that already has the declared type (Choices resolved to their
	// numbers): a hash's format, a rule's structure. Its error is reported as the input's.
	Verify func(v any) error
}

// Choice is one friendly name of an integer input's value.
type Choice struct {
	Name  string
	Value int64
}

// Spec is what an action declares about itself; the playbook loader validates every step's
// `with:` against it before the worker starts.
type Spec struct {
	Name   string // e.g. "checkpoint.quarantine_entity"
	Vendor string // e.g. "checkpoint"; selects the vendor configuration the action needs
	Doc    string
	Inputs []Input
	// Output says what steps.<id>.output holds after a success, for the catalogue.
	Output string
	// Idempotent says the vendor call may be repeated safely (a read, or a set-to-state).
	Idempotent bool
	// Validate checks inputs against one another (every hash of the declared hashType) once
	// each has passed its own checks; nil when they are independent.
	Validate func(in Inputs) error
	// Batch, when set, says the action can carry the targets of many steps in one vendor call:
	// a step with `batch:` then shares its call with the same action's steps of other alerts
	// (Batcher). Nil for an action that cannot.
	Batch *Batch
}

// Batch is how one call of a batchable action serves the steps of many alerts.
type Batch struct {
	// Input names the list-of-strings input whose items are the call's targets (entityIds,
	// hashList): one call sends the union of its steps' targets, and its steps agree on every
	// other input.
	Input string
	// Share gives one step its part of the call's result. out and err are what the call came
	// to (on failure, out is what the vendor did do, if anything: a PartialError's output);
	// targets are the step's own items of Input. It returns the step's output and error: nil
	// when the vendor acted on each of targets; err itself when the call failed as a whole; or,
	// when the vendor judged each target (HEC's per-entity verdicts), an error about the
	// step's own targets alone, classed by them.
	Share func(out Output, err error, targets []string) (Output, error)
}

// Input returns the declaration of the named input.
func (s Spec) Input(name string) (Input, bool) {
	for _, in := range s.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return Input{}, false
}

// Inputs are a step's rendered `with:` values, keyed by input name.
type Inputs map[string]any

// Output is what a successful action returns; it becomes `steps.<id>.output` and the step's
// `output` in the outcome, so it must marshal to JSON.
type Output = map[string]any

// Action is one response action of the catalogue.
type Action interface {
	Spec() Spec
	// Run performs the vendor call with inputs that Spec().Check has checked and normalised
	// (the dispatcher does so, and Invoke for callers without one). Errors are classed with
	// Permanent, Retryable or RetryAfter; an unclassed error counts as retryable (network
	// trouble is the usual cause).
	Run(ctx context.Context, in Inputs) (Output, error)
}

// Invoke checks in against a's spec and runs it once, without retries or rate limits: for
// callers that have no dispatcher.
func Invoke(ctx context.Context, a Action, in Inputs) (Output, error) {
	checked, err := a.Spec().Check(in)
	if err != nil {
		return nil, err
	}
	return a.Run(ctx, checked)
}

// Catalogue holds the declarations of actions, whether or not a client stands behind them:
// what the playbook loader checks steps against and what `worker actions` prints.
type Catalogue struct {
	specs map[string]Spec
}

// NewCatalogue builds a catalogue and rejects duplicate or empty names.
func NewCatalogue(specs ...Spec) (*Catalogue, error) {
	c := &Catalogue{specs: make(map[string]Spec, len(specs))}
	for _, s := range specs {
		if err := c.add(s); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Catalogue) add(s Spec) error {
	if s.Name == "" {
		return fmt.Errorf("register action: empty name")
	}
	if _, dup := c.specs[s.Name]; dup {
		return fmt.Errorf("register action %q: already registered", s.Name)
	}
	if b := s.Batch; b != nil {
		if in, ok := s.Input(b.Input); !ok || in.Type != StringList {
			return fmt.Errorf("register action %q: batch input %q is not one of its list-of-strings inputs", s.Name, b.Input)
		}
		if b.Share == nil {
			return fmt.Errorf("register action %q: batch has no Share", s.Name)
		}
	}
	c.specs[s.Name] = s
	return nil
}

// Spec returns the named action's declaration.
func (c *Catalogue) Spec(name string) (Spec, bool) {
	s, ok := c.specs[name]
	return s, ok
}

// Names lists the actions in order.
func (c *Catalogue) Names() []string {
	names := make([]string, 0, len(c.specs))
	for n := range c.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Suggest returns the name closest to an unknown one, or "" when none is close.
func (c *Catalogue) Suggest(unknown string) string {
	best, bestDist := "", len(unknown)/2+2
	for name := range c.specs {
		d := editDistance(unknown, name)
		if strings.HasPrefix(name, unknown) {
			d = min(d, 1)
		}
		if d < bestDist || (d == bestDist && name < best) {
			best, bestDist = name, d
		}
	}
	return best
}

// Registry maps action names to runnable actions. It is built explicitly by the caller.
type Registry struct {
	Catalogue
	byName map[string]Action
}

// NewRegistry builds a registry and rejects duplicate or empty names.
func NewRegistry(as ...Action) (*Registry, error) {
	r := &Registry{Catalogue: Catalogue{specs: make(map[string]Spec, len(as))}, byName: make(map[string]Action, len(as))}
	for _, a := range as {
		if err := r.Add(a); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Add registers one more action.
func (r *Registry) Add(a Action) error {
	if err := r.add(a.Spec()); err != nil {
		return err
	}
	r.byName[a.Spec().Name] = a
	return nil
}

// Lookup returns the named action.
func (r *Registry) Lookup(name string) (Action, bool) {
	a, ok := r.byName[name]
	return a, ok
}

// Actions lists the registered actions in name order.
func (r *Registry) Actions() []Action {
	as := make([]Action, 0, len(r.byName))
	for _, n := range r.Names() {
		as = append(as, r.byName[n])
	}
	return as
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
