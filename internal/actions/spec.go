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

// Input declares one parameter of an action. Enum, when set, lists the accepted (friendly)
// values of a String input.
type Input struct {
	Name     string
	Type     Type
	Required bool
	Enum     []string
	Doc      string
}

// Spec is what an action declares about itself; the playbook loader validates every step's
// `with:` against it before the worker starts.
type Spec struct {
	Name   string // e.g. "checkpoint.quarantine_entity"
	Vendor string // e.g. "checkpoint"; selects the vendor configuration the action needs
	Doc    string
	Inputs []Input
	// Idempotent says the vendor call may be repeated safely (a read, or a set-to-state).
	Idempotent bool
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
	// Run performs the vendor call. Errors are classed with Permanent, Retryable or RetryAfter;
	// an unclassed error counts as retryable (network trouble is the usual cause).
	Run(ctx context.Context, in Inputs) (Output, error)
}

// Registry maps action names to actions. It is built explicitly by the caller.
type Registry struct {
	byName map[string]Action
}

// NewRegistry builds a registry and rejects duplicate or empty names.
func NewRegistry(as ...Action) (*Registry, error) {
	r := &Registry{byName: make(map[string]Action, len(as))}
	for _, a := range as {
		if err := r.Add(a); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Add registers one more action.
func (r *Registry) Add(a Action) error {
	name := a.Spec().Name
	if name == "" {
		return fmt.Errorf("register action: empty name")
	}
	if _, dup := r.byName[name]; dup {
		return fmt.Errorf("register action %q: already registered", name)
	}
	r.byName[name] = a
	return nil
}

// Lookup returns the named action.
func (r *Registry) Lookup(name string) (Action, bool) {
	a, ok := r.byName[name]
	return a, ok
}

// Spec returns the named action's declaration.
func (r *Registry) Spec(name string) (Spec, bool) {
	a, ok := r.byName[name]
	if !ok {
		return Spec{}, false
	}
	return a.Spec(), true
}

// Names lists the registered actions in order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Suggest returns the registered name closest to an unknown one, or "" when none is close.
func (r *Registry) Suggest(unknown string) string {
	best, bestDist := "", len(unknown)/2+2
	for name := range r.byName {
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
