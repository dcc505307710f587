package actions

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Check validates rendered inputs against the spec: every required input present, no unknown
// ones, every value of its declared type and enum. A failure is permanent: retrying cannot fix it.
func (s Spec) Check(in Inputs) error {
	var problems []string
	for _, decl := range s.Inputs {
		v, ok := in[decl.Name]
		if !ok || v == nil {
			if decl.Required {
				problems = append(problems, fmt.Sprintf("missing required input %q", decl.Name))
			}
			continue
		}
		if err := decl.check(v); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for name := range in {
		if _, ok := s.Input(name); !ok {
			problems = append(problems, fmt.Sprintf("unknown input %q", name))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return Permanent(fmt.Errorf("%s: invalid inputs: %s", s.Name, strings.Join(problems, "; ")))
	}
	return nil
}

func (decl Input) check(v any) error {
	switch decl.Type {
	case String:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("input %q must be a string, got %s", decl.Name, describe(v))
		}
		if len(decl.Enum) > 0 && !slices.Contains(decl.Enum, s) {
			return fmt.Errorf("input %q must be one of %s, got %q", decl.Name, strings.Join(decl.Enum, ", "), s)
		}
	case StringList:
		list, err := toStringList(v)
		if err != nil {
			return fmt.Errorf("input %q %w", decl.Name, err)
		}
		if len(list) == 0 {
			return fmt.Errorf("input %q must not be empty", decl.Name)
		}
	case Int:
		if _, ok := toInt(v); !ok {
			return fmt.Errorf("input %q must be a whole number, got %s", decl.Name, describe(v))
		}
	case Bool:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("input %q must be true or false, got %s", decl.Name, describe(v))
		}
	case Object:
		if _, ok := v.(map[string]any); !ok {
			return fmt.Errorf("input %q must be an object, got %s", decl.Name, describe(v))
		}
	}
	return nil
}

// String returns a string input, or "" when it is absent. Call it after Check.
func (in Inputs) String(name string) string {
	s, _ := in[name].(string)
	return s
}

// StringList returns a list input; a single string becomes a one-element list.
func (in Inputs) StringList(name string) []string {
	list, _ := toStringList(in[name])
	return list
}

// Int returns a whole-number input and whether it was present.
func (in Inputs) Int(name string) (int64, bool) {
	return toInt(in[name])
}

// Bool returns a bool input and whether it was present.
func (in Inputs) Bool(name string) (bool, bool) {
	b, ok := in[name].(bool)
	return b, ok
}

func toStringList(v any) ([]string, error) {
	switch t := v.(type) {
	case string:
		return []string{t}, nil
	case []string:
		return t, nil
	case []any:
		out := make([]string, 0, len(t))
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("must be a list of strings, item %d is %s", i, describe(e))
			}
			out = append(out, s)
		}
		return out, nil
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("must be a list of strings, got %s", describe(v))
	}
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case uint64:
		if n > math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	case float64:
		if n != math.Trunc(n) || math.IsInf(n, 0) || math.Abs(n) > 1<<53 {
			return 0, false
		}
		return int64(n), true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", t)
	case bool:
		return fmt.Sprintf("bool %t", t)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T %v", v, v)
	}
}
