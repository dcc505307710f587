package actions

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Check validates rendered inputs against the spec: every required input present, no unknown
// ones, every value of its declared type and within its limits, then the spec's own Validate.
// It returns the inputs normalised, so actions read them without checking again: lists as
// []string, whole numbers as int64 (friendly names resolved), absent and null inputs left out.
// A failure is permanent: retrying cannot fix it.
func (s Spec) Check(in Inputs) (Inputs, error) {
	var problems []string
	out := make(Inputs, len(in))
	for _, decl := range s.Inputs {
		v, ok := in[decl.Name]
		if !ok || v == nil {
			if decl.Required {
				problems = append(problems, fmt.Sprintf("missing required input %q", decl.Name))
			}
			continue
		}
		norm, err := decl.check(v)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		out[decl.Name] = norm
	}
	for name := range in {
		if _, ok := s.Input(name); !ok {
			problems = append(problems, fmt.Sprintf("unknown input %q", name))
		}
	}
	if len(problems) == 0 && s.Validate != nil {
		if err := s.Validate(out); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, Invalid(fmt.Errorf("%s: invalid inputs: %s", s.Name, strings.Join(problems, "; ")))
	}
	return out, nil
}

// CheckValue checks one input's value as Check would, for a value known before any alert
// arrives (a playbook's literal). It returns the problem, or "" when there is none.
func (decl Input) CheckValue(v any) string {
	if v == nil {
		if decl.Required {
			return fmt.Sprintf("input %q is required; got null", decl.Name)
		}
		return ""
	}
	if _, err := decl.check(v); err != nil {
		return err.Error()
	}
	return ""
}

func (decl Input) check(v any) (any, error) {
	norm, err := decl.typed(v)
	if err != nil {
		return nil, err
	}
	if decl.Verify != nil {
		if err := decl.Verify(norm); err != nil {
			return nil, fmt.Errorf("input %q: %w", decl.Name, err)
		}
	}
	return norm, nil
}

// typed checks v's type and limits and returns it in its normal form.
func (decl Input) typed(v any) (any, error) {
	switch decl.Type {
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("input %q must be a string, got %s", decl.Name, describe(v))
		}
		if len(decl.Enum) > 0 && !slices.Contains(decl.Enum, s) {
			return nil, fmt.Errorf("input %q must be one of %s, got %q", decl.Name, strings.Join(decl.Enum, ", "), s)
		}
		if decl.MaxLen > 0 && utf8.RuneCountInString(s) > decl.MaxLen {
			return nil, fmt.Errorf("input %q must be at most %d characters, got %d", decl.Name, decl.MaxLen, utf8.RuneCountInString(s))
		}
		return s, nil
	case StringList:
		list, err := toStringList(v)
		if err != nil {
			return nil, fmt.Errorf("input %q %w", decl.Name, err)
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("input %q must not be empty", decl.Name)
		}
		if decl.MaxItems > 0 && len(list) > decl.MaxItems {
			return nil, fmt.Errorf("input %q must hold at most %d items, got %d", decl.Name, decl.MaxItems, len(list))
		}
		if decl.MaxLen > 0 {
			for i, e := range list {
				if n := utf8.RuneCountInString(e); n > decl.MaxLen {
					return nil, fmt.Errorf("input %q item %d must be at most %d characters, got %d", decl.Name, i, decl.MaxLen, n)
				}
			}
		}
		return list, nil
	case Int:
		return decl.integer(v)
	case Bool:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("input %q must be true or false, got %s", decl.Name, describe(v))
		}
		return b, nil
	case Object:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("input %q must be an object, got %s", decl.Name, describe(v))
		}
		return m, nil
	}
	return v, nil
}

func (decl Input) integer(v any) (int64, error) {
	if name, ok := v.(string); ok && len(decl.Choices) > 0 {
		for _, c := range decl.Choices {
			if c.Name == name {
				return c.Value, nil
			}
		}
		return 0, fmt.Errorf("input %q must be one of %s, got %q", decl.Name, decl.choiceList(), name)
	}
	n, ok := toInt(v)
	if !ok {
		if len(decl.Choices) > 0 {
			return 0, fmt.Errorf("input %q must be one of %s, got %s", decl.Name, decl.choiceList(), describe(v))
		}
		return 0, fmt.Errorf("input %q must be a whole number, got %s", decl.Name, describe(v))
	}
	if len(decl.Choices) > 0 && !slices.ContainsFunc(decl.Choices, func(c Choice) bool { return c.Value == n }) {
		return 0, fmt.Errorf("input %q must be one of %s, got %d", decl.Name, decl.choiceList(), n)
	}
	if decl.Bounded && (n < decl.Min || n > decl.Max) {
		return 0, fmt.Errorf("input %q must be between %d and %d, got %d", decl.Name, decl.Min, decl.Max, n)
	}
	return n, nil
}

// choiceList renders Choices as `open (1), closed (3)`.
func (decl Input) choiceList() string {
	parts := make([]string, len(decl.Choices))
	for i, c := range decl.Choices {
		parts[i] = fmt.Sprintf("%s (%d)", c.Name, c.Value)
	}
	return strings.Join(parts, ", ")
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

// WholeNumber reads a whole number as YAML, JSON (with or without UseNumber) or Go code gives
// it; a fraction, or a float beyond 2^53, is not one.
func WholeNumber(v any) (int64, bool) { return toInt(v) }

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
