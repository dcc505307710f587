package actions

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

// checkSpec has one input of every Type; only entityIds is required.
var checkSpec = Spec{
	Name:   "checkpoint.entity_action",
	Vendor: "checkpoint",
	Inputs: []Input{
		{Name: "entityIds", Type: StringList, Required: true},
		{Name: "action", Type: String, Enum: []string{"quarantine", "restore"}},
		{Name: "note", Type: String},
		{Name: "limit", Type: Int},
		{Name: "force", Type: Bool},
		{Name: "params", Type: Object},
		{Name: "extra", Type: Any},
	},
}

func TestSpecCheckAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Inputs
	}{
		{"only the required input", Inputs{"entityIds": []string{"a1"}}},
		{"a single string as a list", Inputs{"entityIds": "a1"}},
		{"[]any of strings", Inputs{"entityIds": []any{"a1", "b2"}}},
		{"[]string", Inputs{"entityIds": []string{"a1", "b2"}}},
		{"enum value", Inputs{"entityIds": "a1", "action": "restore"}},
		{"free string", Inputs{"entityIds": "a1", "note": ""}},
		{"int", Inputs{"entityIds": "a1", "limit": 3}},
		{"int64", Inputs{"entityIds": "a1", "limit": int64(-7)}},
		{"int32", Inputs{"entityIds": "a1", "limit": int32(7)}},
		{"uint64", Inputs{"entityIds": "a1", "limit": uint64(7)}},
		{"whole float64 (JSON number)", Inputs{"entityIds": "a1", "limit": float64(42)}},
		{"negative whole float64", Inputs{"entityIds": "a1", "limit": -2.0}},
		{"json.Number", Inputs{"entityIds": "a1", "limit": json.Number("12")}},
		{"bool", Inputs{"entityIds": "a1", "force": false}},
		{"object", Inputs{"entityIds": "a1", "params": map[string]any{"k": "v"}}},
		{"empty object", Inputs{"entityIds": "a1", "params": map[string]any{}}},
		{"any: number", Inputs{"entityIds": "a1", "extra": 1.5}},
		{"any: list", Inputs{"entityIds": "a1", "extra": []any{1, "x"}}},
		{"null optional input counts as absent", Inputs{"entityIds": "a1", "limit": nil}},
		{"everything", Inputs{
			"entityIds": []any{"a1"}, "action": "quarantine", "note": "n", "limit": 1.0,
			"force": true, "params": map[string]any{}, "extra": nil,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := checkSpec.Check(tt.in); err != nil {
				t.Errorf("Check(%v) = %v; want nil", tt.in, err)
			}
		})
	}
}

func TestSpecCheckRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Inputs
		want []string // substrings of the error, each naming the input
	}{
		{"missing required", Inputs{}, []string{`missing required input "entityIds"`}},
		{"null required", Inputs{"entityIds": nil}, []string{`missing required input "entityIds"`}},
		{"unknown input", Inputs{"entityIds": "a1", "entityId": "a1"}, []string{`unknown input "entityId"`}},
		{"unknown input with null value", Inputs{"entityIds": "a1", "bogus": nil}, []string{`unknown input "bogus"`}},

		{"string: number", Inputs{"entityIds": "a1", "note": 5}, []string{`input "note" must be a string, got int 5`}},
		{"string: bool", Inputs{"entityIds": "a1", "note": true}, []string{`input "note" must be a string, got bool true`}},
		{"string: list", Inputs{"entityIds": "a1", "note": []any{"x"}}, []string{`input "note" must be a string, got a list`}},
		{"enum: not a member", Inputs{"entityIds": "a1", "action": "delete"}, []string{`input "action" must be one of quarantine, restore, got "delete"`}},
		{"enum: case matters", Inputs{"entityIds": "a1", "action": "Quarantine"}, []string{`input "action" must be one of`}},
		{"enum: number", Inputs{"entityIds": "a1", "action": 1}, []string{`input "action" must be a string`}},

		{"list: empty []any", Inputs{"entityIds": []any{}}, []string{`input "entityIds" must not be empty`}},
		{"list: empty []string", Inputs{"entityIds": []string{}}, []string{`input "entityIds" must not be empty`}},
		{"list: number item", Inputs{"entityIds": []any{"a1", 3.0}}, []string{`input "entityIds" must be a list of strings, item 1 is float64 3`}},
		{"list: object", Inputs{"entityIds": map[string]any{"a": "b"}}, []string{`input "entityIds" must be a list of strings, got an object`}},
		{"list: number", Inputs{"entityIds": 7}, []string{`input "entityIds" must be a list of strings, got int 7`}},

		{"int: 1.5", Inputs{"entityIds": "a1", "limit": 1.5}, []string{`input "limit" must be a whole number, got float64 1.5`}},
		{"int: string", Inputs{"entityIds": "a1", "limit": "3"}, []string{`input "limit" must be a whole number, got string "3"`}},
		{"int: bool", Inputs{"entityIds": "a1", "limit": true}, []string{`input "limit" must be a whole number`}},
		{"int: NaN", Inputs{"entityIds": "a1", "limit": math.NaN()}, []string{`input "limit" must be a whole number`}},
		{"int: +Inf", Inputs{"entityIds": "a1", "limit": math.Inf(1)}, []string{`input "limit" must be a whole number`}},
		{"int: beyond 2^53", Inputs{"entityIds": "a1", "limit": 1e300}, []string{`input "limit" must be a whole number`}},
		{"int: uint64 overflow", Inputs{"entityIds": "a1", "limit": uint64(math.MaxUint64)}, []string{`input "limit" must be a whole number`}},
		{"int: fractional json.Number", Inputs{"entityIds": "a1", "limit": json.Number("1.5")}, []string{`input "limit" must be a whole number`}},

		{"bool: string", Inputs{"entityIds": "a1", "force": "true"}, []string{`input "force" must be true or false, got string "true"`}},
		{"bool: number", Inputs{"entityIds": "a1", "force": 1}, []string{`input "force" must be true or false`}},

		{"object: list", Inputs{"entityIds": "a1", "params": []any{}}, []string{`input "params" must be an object, got a list`}},
		{"object: string", Inputs{"entityIds": "a1", "params": "k=v"}, []string{`input "params" must be an object`}},

		{"every problem reported", Inputs{"note": 1, "limit": 0.5, "bogus": "x"}, []string{
			`missing required input "entityIds"`, `input "note" must be a string`,
			`input "limit" must be a whole number`, `unknown input "bogus"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := checkSpec.Check(tt.in)
			if err == nil {
				t.Fatalf("Check(%v) = nil; want an error", tt.in)
			}
			if !IsPermanent(err) {
				t.Errorf("Check error %q is not permanent", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, checkSpec.Name+": ") {
				t.Errorf("Check error %q does not start with the action name %q", msg, checkSpec.Name)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Check error %q; want it to contain %q", msg, w)
				}
			}
		})
	}
}

func TestSpecCheckDeterministic(t *testing.T) {
	t.Parallel()
	in := Inputs{"a": 1, "b": 2, "c": 3, "d": 4, "note": 5}
	_, firstErr := checkSpec.Check(in)
	first := firstErr.Error()
	for range 20 {
		if _, err := checkSpec.Check(in); err.Error() != first {
			t.Fatalf("Check is not deterministic: %q then %q", first, err)
		}
	}
}

func TestSpecCheckNoInputs(t *testing.T) {
	t.Parallel()
	s := Spec{Name: "nats.ping"}
	if _, err := s.Check(nil); err != nil {
		t.Errorf("Check(nil) on a spec without inputs = %v", err)
	}
	if _, err := s.Check(Inputs{}); err != nil {
		t.Errorf("Check({}) on a spec without inputs = %v", err)
	}
	if _, err := s.Check(Inputs{"x": 1}); err == nil || !strings.Contains(err.Error(), `unknown input "x"`) {
		t.Errorf("Check({x}) = %v; want unknown input", err)
	}
}

func TestInputsAccessors(t *testing.T) {
	t.Parallel()
	in := Inputs{
		"s":     "hello",
		"one":   "a1",
		"many":  []any{"a1", "b2"},
		"typed": []string{"c3"},
		"f":     float64(7),
		"i":     int64(-3),
		"frac":  2.5,
		"b":     true,
		"num":   5,
	}

	if got := in.String("s"); got != "hello" {
		t.Errorf(`String("s") = %q`, got)
	}
	if got := in.String("num"); got != "" {
		t.Errorf(`String("num") = %q; want "" for a non-string`, got)
	}
	if got := in.String("absent"); got != "" {
		t.Errorf(`String("absent") = %q; want ""`, got)
	}

	lists := []struct {
		key  string
		want []string
	}{
		{"one", []string{"a1"}},
		{"many", []string{"a1", "b2"}},
		{"typed", []string{"c3"}},
		{"absent", nil},
		{"num", nil},
	}
	for _, l := range lists {
		if got := in.StringList(l.key); !slices.Equal(got, l.want) {
			t.Errorf("StringList(%q) = %q; want %q", l.key, got, l.want)
		}
	}

	ints := []struct {
		key    string
		want   int64
		wantOK bool
	}{
		{"f", 7, true},
		{"i", -3, true},
		{"num", 5, true},
		{"frac", 0, false},
		{"s", 0, false},
		{"absent", 0, false},
	}
	for _, c := range ints {
		if got, ok := in.Int(c.key); got != c.want || ok != c.wantOK {
			t.Errorf("Int(%q) = %d, %v; want %d, %v", c.key, got, ok, c.want, c.wantOK)
		}
	}

	if got, ok := in.Bool("b"); !got || !ok {
		t.Errorf(`Bool("b") = %v, %v`, got, ok)
	}
	if got, ok := in.Bool("absent"); got || ok {
		t.Errorf(`Bool("absent") = %v, %v; want false, false`, got, ok)
	}
	if got, ok := in.Bool("s"); got || ok {
		t.Errorf(`Bool("s") = %v, %v; want false, false`, got, ok)
	}
}
