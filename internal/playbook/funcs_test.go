package playbook

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// evalExpr compiles src as the loader does and runs it in env.
func evalExpr(tb testing.TB, src string, env *Env) (any, error) {
	tb.Helper()
	prog, err := compile(src, scope{}, false)
	if err != nil {
		tb.Fatalf("compile %s: %v", src, err)
	}
	if env == nil {
		env = &Env{}
	}
	r := newRenderer(env.exprEnv(env.Vars, nil))
	defer r.release()
	return r.run(prog)
}

type helperCase struct {
	src     string
	want    any
	wantErr string // a part of the error
}

func runHelperCases(t *testing.T, env *Env, cases []helperCase) {
	t.Helper()
	for _, tt := range cases {
		got, err := evalExpr(t, tt.src, env)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error = %v, want one with %q", tt.src, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.src, err)
		case !reflect.DeepEqual(got, tt.want):
			t.Errorf("%s = %#v, want %#v", tt.src, got, tt.want)
		}
	}
}

func TestInCIDR(t *testing.T) {
	t.Parallel()
	env := &Env{
		Alert: map[string]any{"ip": "10.1.2.3", "ip6": "fd00::1", "mapped": "::ffff:10.9.9.9", "public": "8.8.8.8", "junk": "N/A", "n": 5.0},
		Vars:  map[string]any{"internal": []any{"10.0.0.0/8", "fd00::/8"}, "bad": []any{"10.0.0.0/40"}, "mixed": []any{"10.0.0.0/8", 7}},
	}
	runHelperCases(t, env, []helperCase{
		{`inCIDR(alert.ip, "10.0.0.0/8")`, true, ""},
		{`inCIDR(alert.ip, "10.1.2.0/24")`, true, ""},
		{`inCIDR(alert.ip, "192.168.0.0/16")`, false, ""},
		{`inCIDR(alert.ip, "10.1.2.3")`, true, ""},   // a bare address is a network of one
		{`inCIDR(alert.ip, "10.1.2.3/8")`, true, ""}, // host bits are ignored
		{`inCIDR(alert.public, ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])`, false, ""},
		{`inCIDR(alert.ip6, vars.internal)`, true, ""},
		{`inCIDR(alert.mapped, "10.0.0.0/8")`, true, ""}, // an IPv4-mapped IPv6 address is its IPv4 one
		{`inCIDR(alert.ip, "fd00::/8")`, false, ""},
		{`inCIDR("fe80::1%eth0", "fe80::/10")`, true, ""},
		{`inCIDR(alert.ip, split("192.168.0.0/16,10.0.0.0/8", ","))`, true, ""},
		{`inCIDR(alert.junk, "10.0.0.0/8")`, nil, `inCIDR: "N/A" is not an IP address`},
		{`inCIDR(alert.nope, "10.0.0.0/8")`, nil, "inCIDR: the address must be a string, got nil"},
		{`inCIDR(alert.n, "10.0.0.0/8")`, nil, "inCIDR: the address must be a string, got number"},
		{`inCIDR(alert.ip, vars.bad)`, nil, `inCIDR: "10.0.0.0/40" is not a network such as 10.0.0.0/8 or an IP address`},
		{`inCIDR(alert.ip, vars.mixed)`, true, ""}, // the first network matches before the bad item is read
		{`inCIDR(alert.public, vars.mixed)`, nil, "inCIDR: argument 2: item 1 must be a string, got number"},
		{`inCIDR(alert.ip, vars.nope)`, nil, "inCIDR: argument 2 must be a string or a list of strings, got nil"},
	})
}

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	env := &Env{Alert: map[string]any{
		"path": "/var/log/nginx/access.log", "win": `C:\Users\bob\AppData\Roaming\evil.exe`, "star": "a*b",
	}}
	runHelperCases(t, env, []helperCase{
		{`globMatch("/var/log/*/access.log", alert.path)`, true, ""},
		{`globMatch("/var/log/*.log", alert.path)`, false, ""}, // * stays within one element
		{`globMatch("/var/**.log", alert.path)`, true, ""},     // ** crosses them
		{`globMatch("/var/**/access.log", alert.path)`, true, ""},
		{`globMatch("/var/log/nginx/**/access.log", alert.path)`, true, ""}, // **/ matches no directory too
		{`globMatch("/var/log/nginx/acce?s.log", alert.path)`, true, ""},
		{`globMatch("/var/log/nginx/[a-c]ccess.log", alert.path)`, true, ""},
		{`globMatch("/var/log/nginx/[!a]ccess.log", alert.path)`, false, ""},
		{`globMatch("/VAR/log/**", alert.path)`, false, ""}, // case matters
		{`globMatch("C:\\Users\\*\\AppData\\**", alert.win)`, true, ""},
		{`globMatch("C:\\Users\\*.exe", alert.win)`, false, ""},
		{`globMatch("a[*]b", alert.star)`, true, ""},
		{`globMatch("a[*]b", "axb")`, false, ""},
		{`globMatch(["*.txt", "/var/**"], alert.path)`, true, ""},
		{`globMatch([], alert.path)`, false, ""},
		{`globMatch("*", alert.nope)`, nil, "globMatch: the text to match must be a string, got nil"},
	})
}

func TestDomainMatch(t *testing.T) {
	t.Parallel()
	env := &Env{
		Alert: map[string]any{"host": "Mail.Example.COM.", "deep": "a.b.example.com", "apex": "example.com", "other": "badexample.com"},
		Vars:  map[string]any{"bad": "*.*.com"},
	}
	runHelperCases(t, env, []helperCase{
		{`domainMatch("*.example.com", alert.host)`, true, ""}, // case and the final dot are ignored
		{`domainMatch("*.example.com", alert.deep)`, true, ""}, // any depth
		{`domainMatch("*.example.com", alert.apex)`, false, ""},
		{`domainMatch("*.example.com", alert.other)`, false, ""}, // a label, not a suffix of text
		{`domainMatch("example.com", alert.apex)`, true, ""},
		{`domainMatch("example.com", alert.deep)`, false, ""},
		{`domainMatch(["example.com", "*.example.com"], alert.deep)`, true, ""},
		{`domainMatch("*", alert.apex)`, true, ""},
		{`domainMatch("*", "")`, false, ""},
		{`domainMatch(vars.bad, alert.apex)`, nil, `domainMatch: pattern "*.*.com": "*" may only stand as the whole first label, as in *.example.com`},
		{`domainMatch("*.example.com", alert.nope)`, nil, "domainMatch: the host must be a string, got nil"},
	})
}

func TestDig(t *testing.T) {
	t.Parallel()
	env := &Env{
		Alert: map[string]any{
			"a":      map[string]any{"b": map[string]any{"c": "deep"}, "n": nil},
			"hosts":  []any{map[string]any{"ip": "10.0.0.1"}},
			"dotted": map[string]any{"x.y": 1.0},
			"s":      "text",
		},
		Headers: map[string]string{"X-Id": "h1"},
		Steps:   map[string]StepState{"lookup": {Status: "succeeded", Output: map[string]any{"ip": "10.0.0.2"}}},
	}
	runHelperCases(t, env, []helperCase{
		{`dig(alert, "a.b.c")`, "deep", ""},
		{`dig(alert, "a.b.c", "none")`, "deep", ""},
		{`dig(alert, "a.x.c", "none")`, "none", ""},
		{`dig(alert, "a.x.c")`, nil, ""},
		{`dig(alert, "a.n", "none")`, "none", ""}, // null is missing too
		{`dig(alert, "hosts.0.ip")`, "10.0.0.1", ""},
		{`dig(alert, ["hosts", 0, "ip"])`, "10.0.0.1", ""},
		{`dig(alert, "hosts.1.ip", "none")`, "none", ""},
		{`dig(alert, "hosts.-1.ip", "none")`, "none", ""},
		{`dig(alert, "s.x", "none")`, "none", ""}, // through a string
		{`dig(alert, ["dotted", "x.y"])`, 1.0, ""},
		{`dig(alert, "")`, env.Alert, ""},
		{`dig(headers, "X-Id")`, "h1", ""},
		{`dig(steps, "lookup.output.ip")`, "10.0.0.2", ""},
		{`dig(steps, "lookup.status")`, "succeeded", ""},
		{`dig(steps, "absent.output.ip", "none")`, "none", ""},
		{`dig(nil, "a", 0)`, 0, ""},
		{`dig(alert, alert.s2)`, nil, "dig: the path must be a string or a list, got nil"},
	})
}

func TestSince(t *testing.T) {
	t.Parallel()
	env := &Env{Now: testNow, Alert: map[string]any{
		"at": "2026-11-22T09:00:00Z", "frac": "2026-11-22T09:59:59.5+00:00", "zone": "2026-11-22T10:00:00+01:00",
		"bad": "yesterday", "n": 3.0,
	}}
	runHelperCases(t, env, []helperCase{
		{`since(alert.at)`, time.Hour, ""},
		{`since(alert.frac)`, 500 * time.Millisecond, ""},
		{`since(alert.zone)`, time.Hour, ""},
		{`since(alert.at) > duration("30m")`, true, ""},
		{`since(now() - duration("2h"))`, 2 * time.Hour, ""},
		{`since(date("2026-11-21"))`, 34 * time.Hour, ""},
		{`since(alert.bad)`, nil, `since: "yesterday" is not an RFC 3339 time such as 2026-11-22T10:00:00Z`},
		{`since(alert.nope)`, nil, "since: want an RFC 3339 string or a time, got nil"},
		{`since(alert.n)`, nil, "since: want an RFC 3339 string or a time, got number"},
	})
	// Without Env.Now, since() measures from the wall clock.
	got, err := evalExpr(t, `since(alert.at)`, &Env{Alert: map[string]any{"at": time.Now().Add(-time.Hour).Format(time.RFC3339)}})
	if d, _ := got.(time.Duration); err != nil || d < time.Hour-time.Second || d > time.Hour+time.Minute {
		t.Errorf("since() on the wall clock = %v, %v", got, err)
	}
}

// expr's own string functions are there already: the helpers add none of them.
func TestExprBuiltins(t *testing.T) {
	t.Parallel()
	env := &Env{Alert: map[string]any{"user": "Bob@Example.COM", "subject": "Invoice 42"}}
	runHelperCases(t, env, []helperCase{
		{`lower(alert.user)`, "bob@example.com", ""},
		{`upper(alert.user)`, "BOB@EXAMPLE.COM", ""},
		{`lower(alert.user) endsWith "@example.com"`, true, ""},
		{`alert.subject matches "(?i)^invoice \\d+$"`, true, ""},
		{`alert.subject matches alert.pattern ?? "x"`, false, ""},
		{`get(alert, "user")`, "Bob@Example.COM", ""},
	})
	for _, h := range helpers {
		if !slices.Contains(reservedItemNames, h.name) {
			t.Errorf("helper %s may be taken by a foreach's as", h.name)
		}
		if h.doc == "" || !strings.HasPrefix(h.doc, h.name+"(") {
			t.Errorf("helper %s: doc %q does not start with a call", h.name, h.doc)
		}
	}
}

// Patterns written as literals are compiled when the playbook loads, so a run finds them ready.
func TestLiteralPatternsCompiledAtLoad(t *testing.T) {
	t.Parallel()
	loadInline(t, `name: patterns
on: soar.alerts.>
when: inCIDR(alert.ip, ["192.0.2.0/24"]) || globMatch("/opt/literal-at-load/*", alert.path)
steps:
  - id: e
    if: domainMatch("*.literal-at-load.example", alert.host)
    action: checkpoint.get_event
    with: {eventId: x}
`)
	for _, key := range []string{"inCIDR\x00192.0.2.0/24", "globMatch\x00/opt/literal-at-load/*", "domainMatch\x00*.literal-at-load.example"} {
		if _, ok := patterns.Load(key); !ok {
			t.Errorf("pattern %q was not compiled at load", key)
		}
	}
}
