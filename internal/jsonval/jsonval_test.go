package jsonval

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want any
	}{
		{`7`, int64(7)},
		{`-3`, int64(-3)},
		{`7.5`, 7.5},
		{`1e3`, 1000.0},
		{`12345678901234567890`, json.Number("12345678901234567890")},
		{`1e400`, json.Number("1e400")},
		{`"x"`, "x"},
		{`null`, nil},
		{`{"a":[1,{"b":2.5}],"c":true}`, map[string]any{"a": []any{int64(1), map[string]any{"b": 2.5}}, "c": true}},
		{` {"id": 9007199254740993} `, map[string]any{"id": int64(9007199254740993)}},
	}
	for _, tt := range tests {
		got, err := Decode([]byte(tt.in))
		if err != nil {
			t.Errorf("Decode(%s): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(%s) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `{`, `{"a":1} x`, `{"a":1}{"b":2}`, `nope`, `[1,]`} {
		if v, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%q) = %#v, want an error", in, v)
		}
	}
}

// What Decode gives must encode back to the same numbers.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	in := `{"big":12345678901234567890,"huge":1e400,"f":0.1,"i":42}`
	v, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"big":12345678901234567890,"f":0.1,"huge":1e400,"i":42}` {
		t.Errorf("round trip = %s", out)
	}
}
