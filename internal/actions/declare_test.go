package actions

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// richSpec declares inputs the way GravityZone's actions do: numbered values with friendly
// names, bounds, lengths and a check across inputs.
var richSpec = Spec{
	Name:   "gravityzone.add_to_blocklist",
	Vendor: "gravityzone",
	Inputs: []Input{
		{Name: "hashType", Type: Int, Required: true, Choices: []Choice{{"sha256", 1}, {"md5", 2}}},
		{Name: "hashList", Type: StringList, Required: true, MaxItems: 3, MaxLen: 64},
		{Name: "perPage", Type: Int, Bounded: true, Min: 1, Max: 100},
		{Name: "note", Type: String, MaxLen: 5},
		{Name: "endpointId", Type: String, Verify: func(v any) error {
			if strings.HasPrefix(v.(string), "x") {
				return errors.New("must not start with x")
			}
			return nil
		}},
	},
	Validate: func(in Inputs) error {
		want := map[int64]int{1: 64, 2: 32}[mustInt(in, "hashType")]
		for i, h := range in.StringList("hashList") {
			if len(h) != want {
				return errors.New("hashList item " + string(rune('0'+i)) + " does not fit hashType")
			}
		}
		return nil
	},
}

func mustInt(in Inputs, name string) int64 { n, _ := in.Int(name); return n }

var (
	md5      = strings.Repeat("a", 32)
	zeroTime time.Time
)

func TestCheckNormalises(t *testing.T) {
	t.Parallel()
	got, err := richSpec.Check(Inputs{"hashType": "md5", "hashList": []any{md5}, "perPage": 100.0, "note": "héllo", "endpointId": nil})
	if err != nil {
		t.Fatal(err)
	}
	want := Inputs{"hashType": int64(2), "hashList": []string{md5}, "perPage": int64(100), "note": "héllo"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Check = %#v, want %#v", got, want)
	}
	if got, _ := richSpec.Check(Inputs{"hashType": 2, "hashList": md5}); got["hashType"] != int64(2) {
		t.Errorf("the number itself: %#v", got["hashType"])
	}
}

func TestCheckLimits(t *testing.T) {
	t.Parallel()
	base := func(extra Inputs) Inputs {
		in := Inputs{"hashType": "md5", "hashList": []any{md5}}
		for k, v := range extra {
			in[k] = v
		}
		return in
	}
	cases := []struct {
		name string
		in   Inputs
		want string
	}{
		{"unknown friendly name", base(Inputs{"hashType": "sha1"}), `input "hashType" must be one of sha256 (1), md5 (2), got "sha1"`},
		{"number outside the choices", base(Inputs{"hashType": 3}), `input "hashType" must be one of sha256 (1), md5 (2), got 3`},
		{"not a number", base(Inputs{"hashType": true}), `input "hashType" must be one of sha256 (1), md5 (2), got bool true`},
		{"below the bound", base(Inputs{"perPage": 0}), `input "perPage" must be between 1 and 100, got 0`},
		{"above the bound", base(Inputs{"perPage": 101}), `input "perPage" must be between 1 and 100, got 101`},
		{"too long", base(Inputs{"note": "123456"}), `input "note" must be at most 5 characters, got 6`},
		{"too many items", base(Inputs{"hashList": []any{md5, md5, md5, md5}}), `input "hashList" must hold at most 3 items, got 4`},
		{"item too long", base(Inputs{"hashList": []any{strings.Repeat("a", 65)}}), `input "hashList" item 0 must be at most 64 characters, got 65`},
		{"verify", base(Inputs{"endpointId": "x1"}), `input "endpointId": must not start with x`},
		{"validate across inputs", base(Inputs{"hashType": "sha256"}), `hashList item 0 does not fit hashType`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := richSpec.Check(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if !IsPermanent(err) || ReasonOf(err) != ReasonInvalidInput {
				t.Errorf("error is permanent %t, reason %q; want permanent invalid_input", IsPermanent(err), ReasonOf(err))
			}
		})
	}
}

// Validate runs only once every input passed its own check: its message would be noise.
func TestValidateNotRunOnBadInputs(t *testing.T) {
	t.Parallel()
	_, err := richSpec.Check(Inputs{"hashType": "sha1", "hashList": []any{md5}})
	if err == nil || strings.Contains(err.Error(), "does not fit") {
		t.Errorf("error %v", err)
	}
}

func TestCheckValue(t *testing.T) {
	t.Parallel()
	decl, _ := richSpec.Input("hashType")
	if msg := decl.CheckValue("closed"); !strings.Contains(msg, "sha256 (1), md5 (2)") {
		t.Errorf("CheckValue = %q", msg)
	}
	if msg := decl.CheckValue(nil); msg != `input "hashType" is required; got null` {
		t.Errorf("CheckValue(nil) = %q", msg)
	}
	if msg := decl.CheckValue("md5"); msg != "" {
		t.Errorf("CheckValue(md5) = %q", msg)
	}
}

func TestVendorConfigureReportsEverythingAtOnce(t *testing.T) {
	t.Parallel()
	opened := 0
	v := Vendor{
		Name: "gravityzone",
		Vars: []Var{
			{Name: "GZ_BASE_URL", Required: true, Check: func(s string) error {
				if !strings.HasPrefix(s, "https://") {
					return errors.New("must be an https URL")
				}
				return nil
			}},
			{Name: "GZ_API_KEY", Required: true, Secret: true},
			{Name: "GZ_COMPANY", Required: true},
			RateVar("GZ_RATE_LIMIT", "10"),
		},
		RateLimitVar: "GZ_RATE_LIMIT",
		Open: func(Settings, Deps) (*Instance, error) {
			opened++
			return &Instance{}, nil
		},
	}
	_, _, err := v.Configure(Settings{"GZ_BASE_URL": "ftp://x", "GZ_RATE_LIMIT": "fast"}, Deps{})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"GZ_API_KEY, GZ_COMPANY not set", "GZ_BASE_URL: must be an https URL", `GZ_RATE_LIMIT: "fast" is not a rate limit`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if opened != 0 {
		t.Error("opened despite the problems")
	}
	_, limit, err := v.Configure(Settings{"GZ_BASE_URL": "https://x", "GZ_API_KEY": "k", "GZ_COMPANY": "c"}, Deps{})
	if err != nil || limit != 10 || opened != 1 {
		t.Errorf("good settings: limit %v, err %v, opened %d; want the default 10", limit, err, opened)
	}
	_, limit, _ = v.Configure(Settings{"GZ_BASE_URL": "https://x", "GZ_API_KEY": "k", "GZ_COMPANY": "c", "GZ_RATE_LIMIT": "0"}, Deps{})
	if limit != 0 {
		t.Errorf("GZ_RATE_LIMIT=0: limit %v, want none", limit)
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]float64{"10": 10, "0.5": 0.5, "0": 0, " 3 ": 3} {
		if got, err := ParseRate(raw); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v", raw, got, err)
		}
	}
	for _, bad := range []string{"-1", "ten", "NaN", "1e9", ""} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted it", bad)
		}
	}
}

func TestReasonOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want string
	}{
		{ClassifyHTTP("op", 401, nil, "", zeroTime), ReasonAuth},
		{ClassifyHTTP("op", 403, nil, "", zeroTime), ReasonAuth},
		{ClassifyHTTP("op", 429, nil, "", zeroTime), ReasonRateLimited},
		{ClassifyHTTP("op", 504, nil, "", zeroTime), ReasonTimeout},
		{ClassifyHTTP("op", 502, nil, "", zeroTime), ReasonServer},
		{ClassifyHTTP("op", 422, nil, "", zeroTime), ReasonClient},
		{ClassifyJSONRPC(&RPCError{Op: "op", Code: -32602, Message: "Invalid params"}), ReasonClient},
		{ClassifyJSONRPC(&RPCError{Op: "op", Code: -32001, Message: "Server busy"}), ReasonServer},
		{Invalid(errors.New("bad")), ReasonInvalidInput},
		{WithReason(ReasonBadResponse, errors.New("not JSON")), ReasonBadResponse},
		{errors.New("who knows"), ReasonUnknown},
	}
	for _, tc := range cases {
		if got := ReasonOf(tc.err); got != tc.want {
			t.Errorf("ReasonOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestClassifyJSONRPC(t *testing.T) {
	t.Parallel()
	for code, permanent := range map[int64]bool{-32700: true, -32600: true, -32601: true, -32602: true, -32603: false, -32000: false, -32099: false, -32100: true, 1: true} {
		err := ClassifyJSONRPC(&RPCError{Op: "isolate endpoint", Code: code, Message: "m", Details: "d"})
		if IsPermanent(err) != permanent {
			t.Errorf("code %d: permanent %t, want %t", code, IsPermanent(err), permanent)
		}
		if !strings.Contains(err.Error(), "isolate endpoint: JSON-RPC error") || !strings.Contains(err.Error(), "m: d") {
			t.Errorf("code %d: message %q", code, err)
		}
	}
}
