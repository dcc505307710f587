package actions

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// stubAction is the smallest Action: a spec and a run that must not be called.
type stubAction struct{ spec Spec }

func (s stubAction) Spec() Spec { return s.spec }
func (s stubAction) Run(context.Context, Inputs) (Output, error) {
	panic("stubAction.Run called")
}

func stub(name string) Action {
	return stubAction{spec: Spec{Name: name, Vendor: strings.SplitN(name, ".", 2)[0]}}
}

// catalogue is the action catalogue of docs/actions.md, used to check suggestions against realistic names.
var catalogue = []string{
	"checkpoint.quarantine_entity", "checkpoint.restore_entity", "checkpoint.entity_action",
	"checkpoint.get_event", "checkpoint.get_exceptions",
	"gravityzone.add_to_blocklist", "gravityzone.get_blocklist_items", "gravityzone.remove_from_blocklist",
	"gravityzone.isolate_endpoint", "gravityzone.restore_endpoint",
	"gravityzone.create_custom_rule", "gravityzone.get_custom_rules", "gravityzone.delete_custom_rule",
	"gravityzone.change_incident_status", "gravityzone.update_incident_note",
	"cyberark.close_event", "cyberark.reopen_event",
	"nats.publish",
}

func catalogueRegistry(t *testing.T) *Registry {
	t.Helper()
	as := make([]Action, 0, len(catalogue))
	for _, n := range catalogue {
		as = append(as, stub(n))
	}
	r, err := NewRegistry(as...)
	if err != nil {
		t.Fatalf("NewRegistry(catalogue): %v", err)
	}
	return r
}

func TestNewRegistryRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		actions []Action
		wantErr string // substring; "" means success
	}{
		{"empty registry", nil, ""},
		{"distinct names", []Action{stub("a.one"), stub("a.two")}, ""},
		{"duplicate name", []Action{stub("a.one"), stub("a.two"), stub("a.one")}, `register action "a.one": already registered`},
		{"empty name", []Action{stub("a.one"), stubAction{}}, "empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRegistry(tt.actions...)
			if tt.wantErr == "" {
				if err != nil || r == nil {
					t.Fatalf("NewRegistry() = %v, %v; want a registry", r, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewRegistry() succeeded; want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewRegistry() error = %q; want it to contain %q", err, tt.wantErr)
			}
			if r != nil {
				t.Errorf("NewRegistry() returned a registry alongside error %v", err)
			}
		})
	}
}

func TestRegistryAddDuplicate(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry(stub("nats.publish"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(stub("nats.publish")); err == nil || !strings.Contains(err.Error(), `"nats.publish"`) {
		t.Errorf("Add(duplicate) = %v; want an error naming the action", err)
	}
	if err := r.Add(stub("nats.request")); err != nil {
		t.Errorf("Add(new) = %v", err)
	}
	if got, want := r.Names(), []string{"nats.publish", "nats.request"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v; want %v", got, want)
	}
}

func TestRegistryLookupSpecNames(t *testing.T) {
	t.Parallel()
	r := catalogueRegistry(t)

	names := r.Names()
	if len(names) != len(catalogue) {
		t.Fatalf("Names() has %d entries; want %d", len(names), len(catalogue))
	}
	if !slices.IsSorted(names) {
		t.Errorf("Names() = %v; want sorted", names)
	}

	tests := []struct {
		name   string
		wantOK bool
	}{
		{"checkpoint.quarantine_entity", true},
		{"gravityzone.isolate_endpoint", true},
		{"nats.publish", true},
		{"checkpoint.quarantine", false},
		{"", false},
		{"CHECKPOINT.QUARANTINE_ENTITY", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, ok := r.Lookup(tt.name)
			if ok != tt.wantOK {
				t.Fatalf("Lookup(%q) ok = %v; want %v", tt.name, ok, tt.wantOK)
			}
			spec, sok := r.Spec(tt.name)
			if sok != tt.wantOK {
				t.Fatalf("Spec(%q) ok = %v; want %v", tt.name, sok, tt.wantOK)
			}
			if !tt.wantOK {
				if a != nil || spec.Name != "" {
					t.Errorf("unknown %q: Lookup = %v, Spec = %+v; want zero values", tt.name, a, spec)
				}
				return
			}
			if a.Spec().Name != tt.name || spec.Name != tt.name {
				t.Errorf("Lookup(%q).Spec().Name = %q, Spec(%q).Name = %q", tt.name, a.Spec().Name, tt.name, spec.Name)
			}
		})
	}
}

func TestRegistrySuggest(t *testing.T) {
	t.Parallel()
	r := catalogueRegistry(t)
	tests := []struct {
		unknown string
		want    string
	}{
		{"checkpoint.quarantine", "checkpoint.quarantine_entity"},          // a prefix
		{"checkpoint.quarantine_entities", "checkpoint.quarantine_entity"}, // a typo past the end
		{"checkpoint.quarantne_entity", "checkpoint.quarantine_entity"},    // a letter dropped
		{"gravityzone.isolate_endpiont", "gravityzone.isolate_endpoint"},   // letters swapped
		{"gravityzone.change", "gravityzone.change_incident_status"},       // a prefix too far for edit distance alone
		{"gravityzone.update", "gravityzone.update_incident_note"},
		{"gravityzone.add_to_blacklist", "gravityzone.add_to_blocklist"},
		{"cyberark.close_events", "cyberark.close_event"},
		{"nats.publsh", "nats.publish"},
		{"slack.post_message", ""},
		{"totally.unrelated.thing.here", ""},
		{"xyz", ""},
	}
	for _, tt := range tests {
		t.Run(tt.unknown, func(t *testing.T) {
			t.Parallel()
			if got := r.Suggest(tt.unknown); got != tt.want {
				t.Errorf("Suggest(%q) = %q; want %q", tt.unknown, got, tt.want)
			}
		})
	}
}

func TestRegistrySuggestEmptyRegistry(t *testing.T) {
	t.Parallel()
	r, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Suggest("checkpoint.quarantine"); got != "" {
		t.Errorf("Suggest on an empty registry = %q; want \"\"", got)
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
		{"flaw", "lawn", 2},
		{"same", "same", 0},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
		if got := editDistance(tt.b, tt.a); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d; want %d (symmetry)", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestSpecInput(t *testing.T) {
	t.Parallel()
	s := Spec{Name: "x.y", Inputs: []Input{{Name: "a", Type: String}, {Name: "b", Type: Int, Required: true}}}
	if in, ok := s.Input("b"); !ok || in.Type != Int || !in.Required {
		t.Errorf("Input(b) = %+v, %v", in, ok)
	}
	if _, ok := s.Input("c"); ok {
		t.Errorf("Input(c) found; want not found")
	}
}

func TestTypeString(t *testing.T) {
	t.Parallel()
	want := map[Type]string{
		String: "string", StringList: "list of strings", Int: "integer",
		Bool: "bool", Object: "object", Any: "any",
	}
	for typ, s := range want {
		if got := typ.String(); got != s {
			t.Errorf("Type(%d).String() = %q; want %q", int(typ), got, s)
		}
	}
}
