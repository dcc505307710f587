package jsonval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
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
		{`-0`, int64(0)},
		{`0`, int64(0)},
		{`7.5`, 7.5},
		{`1e3`, 1000.0},
		{`1E+2`, 100.0},
		{`-2.5e-3`, -0.0025},
		{`100000000000000000`, int64(100000000000000000)},
		{`999999999999999999`, int64(999999999999999999)},
		{`9223372036854775807`, int64(9223372036854775807)},
		{`-9223372036854775808`, int64(-9223372036854775808)},
		{`9223372036854775808`, json.Number("9223372036854775808")},
		{`-9223372036854775809`, json.Number("-9223372036854775809")},
		{`12345678901234567890`, json.Number("12345678901234567890")},
		{`1e400`, json.Number("1e400")},
		{`-1e400`, json.Number("-1e400")},
		{`1.0`, 1.0},
		{`1e-400`, 0.0},
		{`"x"`, "x"},
		{`""`, ""},
		{`"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
		{`"\u0041\u00e9\u4e2D"`, "Aé中"},
		{`"\ud83d\ude00"`, "😀"},            // a surrogate pair is one character
		{`"\ud83d"`, "\uFFFD"},             // a lone high surrogate
		{`"\ude00\ud83d"`, "\uFFFD\uFFFD"}, // a low before a high is two lone halves
		{`"\ud83dx"`, "\uFFFDx"},
		{`"\ud83d\u0041"`, "\uFFFDA"},              // not a low surrogate: read on its own
		{`"\ud83d\ud83d\ude00"`, "\uFFFD😀"},        // a high, then a pair
		{"\"caf\xc3\xa9 \xe2\x82\xac\"", "café €"}, // valid UTF-8 passes as is
		{"\"a\xffb\"", "a\uFFFDb"},                 // each invalid byte becomes U+FFFD
		{"\"\xe2\x82\"", "\uFFFD\uFFFD"},           // a truncated sequence too, byte by byte
		{"\"\xed\xa0\x80\"", "\uFFFD\uFFFD\uFFFD"}, // a surrogate encoded in UTF-8 is invalid
		{"\"\xc0\xaf\\n\"", "\uFFFD\uFFFD\n"},      // an overlong form, with an escape
		{"\"\x7f\"", "\x7f"},
		{`null`, nil},
		{`true`, true},
		{`false`, false},
		{`[]`, []any{}},
		{`{}`, map[string]any{}},
		{` [ 1 , "a" , [ ] , { } ] `, []any{int64(1), "a", []any{}, map[string]any{}}},
		{"\t\n\r {\"a\"\n:\r1\t}\n", map[string]any{"a": int64(1)}},
		{`{"a":[1,{"b":2.5}],"c":true}`, map[string]any{"a": []any{int64(1), map[string]any{"b": 2.5}}, "c": true}},
		{` {"id": 9007199254740993} `, map[string]any{"id": int64(9007199254740993)}},
		{`{"a":1,"a":2,"b":{"c":1},"b":null}`, map[string]any{"a": int64(2), "b": nil}}, // the last wins
		{`{"\u0061":1,"a\u0000":"\u0000"}`, map[string]any{"a": int64(1), "a\x00": "\x00"}},
		{`{"":""}`, map[string]any{"": ""}},
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
		if ref, err := referenceDecode([]byte(tt.in)); err != nil || !reflect.DeepEqual(ref, tt.want) {
			t.Errorf("the test is wrong: encoding/json decodes %s as %#v, %v", tt.in, ref, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, ` `, `{`, `{"a":1} x`, `{"a":1}{"b":2}`, `nope`, `[1,]`,
		// numbers
		`01`, `-01`, `00`, `-`, `--1`, `+1`, `1.`, `.5`, `1e`, `1e+`, `1E-`, `1.e3`, `0x10`, `1_000`,
		`NaN`, `-NaN`, `Infinity`, `-Infinity`, `1.5.3`, `1ee3`, `- 1`,
		// literals
		`tru`, `truex`, `True`, `nul`, `nulll`, `fals`, `undefined`,
		// strings
		`"abc`, `"\"`, `'a'`, "\"a\nb\"", "\"\x00\"", "\"\x1f\"", "\"\t\"", `"\x41"`, `"\'"`, `"\a"`,
		`"\u12"`, `"\u12g4"`, `"\U0041"`, `"\ud83d\u12"`, `"\ud83d\uzzzz"`, `"\`,
		// structure
		`[1 2]`, `[,1]`, `[1,,2]`, `[`, `]`, `}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{a:1}`, `{'a':1}`,
		`{"a":1,}`, `{,}`, `{"a":1 "b":2}`, `{"a":1]`, `[1}`, `{1:1}`, `[1,2`, `{"a":1,`,
		// around the value
		"\xef\xbb\xbf{}", "{}\x00", "\v{}", "{}\f", "1 2", `"a" "b"`, `[] []`, "\u00a0{}",
		strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1),
		strings.Repeat(`{"a":`, maxDepth+1) + "1" + strings.Repeat("}", maxDepth+1),
		strings.Repeat("[{\"a\":", (maxDepth+1)/2) + "[" + strings.Repeat("}]", (maxDepth+1)/2) + "]",
	} {
		if v, err := Decode([]byte(in)); err == nil {
			t.Errorf("Decode(%q) = %#v, want an error", in, v)
		}
		if v, err := referenceDecode([]byte(in)); err == nil {
			t.Errorf("the test is wrong: encoding/json accepts %q as %#v", in, v)
		}
	}
}

// Strings without escapes are copied out of the input once; numbers need only their boxing.
func TestDecodeAllocs(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{`"a string of some length, without escapes: é"`, 2}, // its bytes, and its boxing into any
		{`"an escape\n needs one more, for unescaping: \u00e9"`, 3},
		{`["an escape\n needs one more, for unescaping", "and no more for a second \t"]`, 7}, // and the slice and its boxing
		{`123456`, 1},
		{`true`, 0},
		{`  null  `, 0},
	}
	for _, tt := range tests {
		data := []byte(tt.in)
		if got := testing.AllocsPerRun(100, func() { _, _ = Decode(data) }); got != tt.want {
			t.Errorf("Decode(%s): %v allocations, want %v", tt.in, got, tt.want)
		}
	}
}

// encoding/json allows nesting up to and including its limit; so does Decode.
func TestDecodeDepth(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth),
		strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth),
	} {
		if _, err := Decode([]byte(in)); err != nil {
			t.Errorf("Decode of %d levels: %v", maxDepth, err)
		}
		if _, err := referenceDecode([]byte(in)); err != nil {
			t.Errorf("encoding/json, %d levels: %v", maxDepth, err)
		}
	}
	_, err := Decode([]byte(strings.Repeat("[", maxDepth+1)))
	if want := fmt.Sprintf("invalid character '[' exceeded max depth at offset %d", maxDepth); err == nil || err.Error() != want {
		t.Errorf("Decode of %d levels: %v, want %s", maxDepth+1, err, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		want     string
		is       error // when not nil, errors.Is(err, is) must hold
		isNot    error // when not nil, errors.Is(err, isNot) must not hold
		wantSame bool  // the very error value is
	}{
		// What the encoding/json Decoder gave, which callers may test for.
		{``, "EOF", io.EOF, nil, true},
		{" \n\t\r ", "EOF", io.EOF, nil, true},
		{`{"a":1} x`, "unexpected data after the JSON value", nil, io.EOF, false},
		{`{"a":1}{}`, "unexpected data after the JSON value", nil, io.EOF, false},
		{`01`, "unexpected data after the JSON value", nil, io.EOF, false},
		{`{"id":"x",`, "unexpected end of JSON input at offset 10", io.ErrUnexpectedEOF, nil, false},
		{`"abc`, "unexpected end of JSON input at offset 4", io.ErrUnexpectedEOF, nil, false},
		{`-`, "unexpected end of JSON input at offset 1", io.ErrUnexpectedEOF, nil, false},
		{`tr`, "unexpected end of JSON input at offset 2", io.ErrUnexpectedEOF, nil, false},
		{`{"a`, "unexpected end of JSON input at offset 3", io.ErrUnexpectedEOF, nil, false},
		{`"\u12`, "unexpected end of JSON input at offset 5", io.ErrUnexpectedEOF, nil, false},
		// The rest say what is wrong and where, in encoding/json's words.
		{`{"a": x}`, "invalid character 'x' looking for beginning of value at offset 6", nil, io.ErrUnexpectedEOF, false},
		{`hello`, "invalid character 'h' looking for beginning of value at offset 0", nil, nil, false},
		{`[1,]`, "invalid character ']' looking for beginning of value at offset 3", nil, nil, false},
		{`{"a":1,}`, "invalid character '}' looking for beginning of object key string at offset 7", nil, nil, false},
		{`{'a':1}`, `invalid character '\'' looking for beginning of object key string at offset 1`, nil, nil, false},
		{`{"a" 1}`, "invalid character '1' after object key at offset 5", nil, nil, false},
		{`{"a":1 "b":2}`, `invalid character '"' after object key:value pair at offset 7`, nil, nil, false},
		{`[1 2]`, "invalid character '2' after array element at offset 3", nil, nil, false},
		{`[01]`, "invalid character '1' after array element at offset 2", nil, nil, false},
		{`1.x`, "invalid character 'x' after decimal point in numeric literal at offset 2", nil, nil, false},
		{`1e+x`, "invalid character 'x' in exponent of numeric literal at offset 3", nil, nil, false},
		{`-a`, "invalid character 'a' in numeric literal at offset 1", nil, nil, false},
		{`nul1`, "invalid character '1' in literal null (expecting 'l') at offset 3", nil, nil, false},
		{"\"a\nb\"", `invalid character '\n' in string literal at offset 2`, nil, nil, false},
		{`"\x"`, "invalid character 'x' in string escape code at offset 2", nil, nil, false},
		{`"\u00g0"`, `invalid character 'g' in \u hexadecimal character escape at offset 5`, nil, nil, false},
		{"\xef\xbb\xbf{}", "invalid byte 0xef looking for beginning of value at offset 0", nil, nil, false},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.in))
		switch {
		case err == nil:
			t.Errorf("Decode(%q) succeeded, want %s", tt.in, tt.want)
			continue
		case err.Error() != tt.want:
			t.Errorf("Decode(%q): %q, want %q", tt.in, err, tt.want)
		}
		if tt.wantSame && err != tt.is {
			t.Errorf("Decode(%q): %#v, want the very value %#v", tt.in, err, tt.is)
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("Decode(%q): %v is not %v", tt.in, err, tt.is)
		}
		if tt.isNot != nil && errors.Is(err, tt.isNot) {
			t.Errorf("Decode(%q): %v is %v", tt.in, err, tt.isNot)
		}
	}
}

// Unescaping reuses a buffer: the strings made from it must not share it.
func TestDecodeEscapedStringsIndependent(t *testing.T) {
	t.Parallel()
	v, err := Decode([]byte(`["a\nb","c\td","\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"]`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{"a\nb", "c\td", "éééééééé"}; !reflect.DeepEqual(v, want) {
		t.Errorf("got %#v, want %#v", v, want)
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

// referenceDecode is Decode as it was, on encoding/json: the behaviour Decode must keep.
func referenceDecode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the JSON value")
	}
	return Normalize(v), nil
}

// benchAlert is a typical alert, about 600 bytes.
const benchAlert = `{"id":"a3f1c9e2-7b4d-4e8a-9c1f-2d5e6b7a8c90","source":"crowdstrike","severity":"high",` +
	`"score":87.5,"created":"2024-05-14T09:32:11.482Z","tenant_id":12345678901234567890,` +
	`"host":{"name":"WS-FIN-0042","ip":"10.20.30.40","tags":["finance","vip"]},` +
	`"user":{"name":"jdoe","email":"j.doe@example.com","display":"Jos\u00e9 Doe"},` +
	`"process":{"pid":4812,"cmdline":"powershell.exe -enc SQBFAFgA","path":"C:\\Windows\\System32\\cmd.exe"},` +
	`"indicators":[{"type":"domain","value":"evil.example.net","confidence":0.92},{"type":"ip","value":"203.0.113.7","confidence":7.5e-1}],` +
	`"mitre":["T1059.001","T1027"],"acknowledged":false,"assignee":null,"count":3}`

// fuzzSeeds are realistic alerts and the edge cases of every rule Decode keeps.
var fuzzSeeds = []string{
	benchAlert,
	`{"id":"x-1","severity":3,"tags":["a","b"],"nested":{"deep":{"deeper":[1,2.5,-3e2,null,true,false]}}}`,
	`{"alert_id":18446744073709551615,"event_id":98765432109876543210,"ratio":1.7976931348623157e308,"tiny":5e-324}`,
	`{"msg":"Login from \u4e0a\u6d77 \ud83d\ude00 failed \"twice\"\n\ttab","path":"C:\\temp\\a.exe","url":"https:\/\/x.test\/a?b=c"}`,
	`{"名前":"値","emoji":"😀","mixed":"caf\u00e9 café"}`,
	`{"a":1,"a":2}`, `{"a":{"b":1},"a":[]}`,
	`[]`, `{}`, `[[],[{}],{"":[]}]`, ` 	
 {"a" : [ 1 , 2 ] } 
 `,
	`0`, `-0`, `-0.0`, `1`, `-1`, `1.5`, `1e5`, `1E-5`, `1e+5`, `123456789012345678`, `1234567890123456789`,
	`9223372036854775807`, `9223372036854775808`, `-9223372036854775808`, `-9223372036854775809`,
	`1e309`, `-1e309`, `1e-400`, `0.1e1`, `100000000000000000000000000000.0`,
	`"\ud800"`, `"\udc00"`, `"\ud800\udc00"`, `"\udbff\udfff"`, `"\ud800\ud800"`, `"\ud800\u0041"`, `"\ud800x"`,
	"\"\xff\"", "\"\xc3\"", "\"\xc3\xa9\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xef\xbf\xbd\"", "\"a\xffb\\n\"",
	``, ` `, `{`, `}`, `[`, `]`, `{"a":1} x`, `{"a":1}{"b":2}`, `nope`, `[1,]`, `{"a":1,}`, `01`, `-`, `1.`, `.5`, `1e`,
	`NaN`, `'a'`, "\"\x01\"", `"\q"`, `"\u12"`, `"abc`, `tru`, `truex`, "\xef\xbb\xbf{}", `1 2`, "{}\x00",
	strings.Repeat("[", 50) + strings.Repeat("]", 50),
}

// FuzzDecode holds Decode to the encoding/json implementation it replaced.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data)
		want, wantErr := referenceDecode(data)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("Decode(%q) = %#v, %v; encoding/json: %#v, %v", data, got, err, want, wantErr)
		}
		if err != nil {
			// The error values callers may test for are the same.
			for _, target := range []error{io.EOF, io.ErrUnexpectedEOF} {
				if errors.Is(err, target) != errors.Is(wantErr, target) {
					t.Fatalf("Decode(%q): %v; encoding/json: %v (is %v: %v)", data, err, wantErr, target, errors.Is(wantErr, target))
				}
			}
			if trailing := "unexpected data after the JSON value"; (err.Error() == trailing) != (wantErr.Error() == trailing) {
				t.Fatalf("Decode(%q): %v; encoding/json: %v", data, err, wantErr)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) = %#v; encoding/json: %#v", data, got, want)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	data := []byte(benchAlert)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEncodingJSON(b *testing.B) {
	data := []byte(benchAlert)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := referenceDecode(data); err != nil {
			b.Fatal(err)
		}
	}
}
