package playbook

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/expr-lang/expr/file"

	"github.com/riposte-soar/riposte/internal/jsonval"
)

var (
	fuzzCatOnce sync.Once
	fuzzCat     Catalogue
)

func fuzzCatalogue(tb testing.TB) Catalogue {
	fuzzCatOnce.Do(func() { fuzzCat = testCatalogue(tb) })
	return fuzzCat
}

// addFileSeeds adds every playbook file of the test data as a seed.
func addFileSeeds(f *testing.F) {
	f.Helper()
	var files []string
	for _, pattern := range []string{"testdata/*/*.yaml", "testdata/*/*/*.yml", "testdata/*/*.yaml", "../../playbooks/*.yaml"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	if len(files) == 0 {
		f.Fatal("no seed files")
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(foreachPlaybook))
	f.Add([]byte(varsPlaybook))
	// Aliases that multiply: the loader must stop, not expand them.
	f.Add([]byte("name: a\non: x\nsteps:\n- id: e\n  action: nats.publish\n  with:\n    subject: s\n    data: &a [&b [&c [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], *c, *c, *c, *c, *c, *c, *c, *c, *c], *b, *b, *b, *b, *b, *b, *b, *b, *b]\n    headers: {x: *a}\n"))
}

// Whatever the bytes, loading never panics: it gives a playbook, or problems with a line each,
// and a playbook it gives can be evaluated against any alert without panicking either.
func FuzzLoad(f *testing.F) {
	addFileSeeds(f)
	alerts := []map[string]any{
		{},
		{"type": "phishing", "eventId": "e1", "entityId": "x", "endpoints": []any{map[string]any{"id": "1"}}, "severity": 9.0, "ids": []any{"a"}},
		{"a": map[string]any{"b": nil}, "ip": "10.0.0.1", "at": "2026-11-22T09:00:00Z", "count": "many"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &parser{file: "fuzz.yaml", cat: fuzzCatalogue(t)}
		b := p.parse(data)
		for _, pr := range p.problems {
			if pr.Line < 1 || pr.Msg == "" || strings.Contains(pr.Msg, "\n") {
				t.Fatalf("problem without a line or on several lines: %+v", pr)
			}
		}
		if b == nil || len(p.problems) > 0 {
			return
		}
		for _, a := range alerts {
			env := &Env{Alert: a, Subject: "soar.alerts.x", AlertID: "id", Now: testNow, Steps: map[string]StepState{}}
			vars, err := b.EvalVars(env)
			if err != nil {
				continue
			}
			env.Vars = vars
			_, _ = b.When(env)
			_, _ = b.ConcurrencyKey(env)
			_ = b.MatchesSubject(env.Subject)
			for _, s := range b.Steps {
				items, _ := s.Items(env)
				if items == nil {
					items = []any{nil}
				}
				for _, it := range items {
					_, _ = s.ShouldRunItem(env, it)
					_, _ = s.RenderItem(env, it)
				}
				env.Steps[s.ID] = StepState{Status: "succeeded", Output: map[string]any{"state": "open"}}
			}
		}
	})
}

// Whatever the text of a value and whatever the alert, rendering never panics: a template
// either fails to compile with a message or renders to a value.
func FuzzRender(f *testing.F) {
	for _, s := range []string{
		"plain", "${{ alert.x }}", "a ${{ alert.x }} b ${{ alert_id }}", `${{ {"a": {"b": alert.n}} }}`,
		`${{ "}}" }}`, "${{", "${{ }}", "${{ alert.a.b }}", "${{ inCIDR(alert.ip, \"10.0.0.0/8\") }}",
		"${{ globMatch(alert.p, alert.s) }}", "${{ dig(alert, alert.path, 1) }}", "${{ since(alert.t) }}",
		"${{ toJSON(alert) }} ${{ now() }}", "${{ alert.s matches alert.p }}", "${{ domainMatch(alert.p, alert.s) }}",
	} {
		f.Add(s, []byte(`{"x": 1, "ip": "10.1.1.1", "p": "[a-", "s": "abc", "path": "a.0", "t": "2026-11-22T09:00:00Z", "a": {"b": [1, 2]}}`))
	}
	f.Fuzz(func(t *testing.T, tmpl string, alertJSON []byte) {
		var alert map[string]any
		_ = json.Unmarshal(alertJSON, &alert)
		lits, exprs, err := splitTemplate(tmpl)
		if err != nil {
			return
		}
		if len(lits) != len(exprs)+1 {
			t.Fatalf("splitTemplate(%q): %d texts for %d expressions", tmpl, len(lits), len(exprs))
		}
		if len(exprs) == 0 && lits[0] != tmpl {
			t.Fatalf("splitTemplate(%q) changed text without expressions: %q", tmpl, lits[0])
		}
		progs := make([]*program, 0, len(exprs))
		for _, src := range exprs {
			prog, err := compile(src, scope{item: "host"}, false)
			if err != nil {
				if exprMessage(err) == "" {
					t.Fatalf("compile %q: an error without a message", src)
				}
				return
			}
			progs = append(progs, prog)
		}
		env := &Env{Alert: alert, Now: time.Unix(0, 0)}
		r := newRenderer(env.exprEnv(nil, alert["x"]))
		defer r.release()
		var v value = text{lits: lits, progs: progs}
		if len(progs) == 1 && strings.TrimSpace(lits[0]) == "" && strings.TrimSpace(lits[1]) == "" {
			v = whole{progs[0]}
		}
		if _, err := v.render(r); err != nil && err.Error() == "" {
			t.Fatal("an error without a message")
		}
	})
}

// A Set finds, for any subject, the playbooks whose filters match it as the server's matching
// says, in the set's order, each once, whatever filters the loader accepts.
func FuzzSetMatching(f *testing.F) {
	for _, s := range [][3]string{
		{"soar.alerts.checkpoint.phishing", "soar.alerts.checkpoint.>", "soar.alerts.*.phishing"},
		{"soar.alerts.checkpoint", "soar.alerts.checkpoint.>", "soar.alerts.checkpoint"},
		{"soar.alerts.x", "soar.alerts.*", ">"}, {"soar.alerts", "soar.alerts.*", "soar.*"}, {"soar.alerts.x.y", "soar.*.x.y", "*.*.*.*"},
		{"", ">", "*"}, {"soar..x", "soar.*.x", ">"}, {"soar.", "soar.*", "soar.>"}, {"a.*.b", "a.*.b", "a.x.b"},
		{"a.>", "a.>", "a.*"}, {"a.b", "a.b.c", "a.b"}, {"a.b.c", "a.b", "a.b.*"}, {">", "*", ">"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, subject, filter1, filter2 string) {
		var pbs []*Playbook
		for i, on := range [][]string{{filter1}, {filter2}, {filter1, filter2}, {filter2, "never.matched"}} {
			if checkFilter(on[0]) != "" || len(on) > 1 && checkFilter(on[1]) != "" {
				continue
			}
			pbs = append(pbs, &Playbook{Name: fmt.Sprint(i), On: on})
		}
		var want []*Playbook
		for _, pb := range pbs {
			if pb.MatchesSubject(subject) {
				want = append(want, pb)
			}
		}
		set := NewSet(pbs)
		for range 2 { // looked up, then remembered
			if got := set.Matching(subject); !slices.Equal(got, want) {
				t.Fatalf("Matching(%q) = %v; the server's matching says %v", subject, names(got), names(want))
			}
		}
	})
}

func names(pbs []*Playbook) []string {
	var out []string
	for _, pb := range pbs {
		out = append(out, pb.Name+fmt.Sprint(pb.On))
	}
	return out
}

// fetchPatch changes how members are read, not what they read: whatever the expression and the
// alert, it compiles, evaluates and fails as it would without the patch, with the same value or
// the same message.
func FuzzFetchPatch(f *testing.F) {
	const alert = `{"type": "phishing", "n": 2, "s": "abc", "tags": ["a", "b"], "a": {"b": [1, {"c": "d"}], "e": null},
		"endpoints": [{"id": "1", "os": "linux"}, {"id": "2"}], "sender": {"domain": "evil.example"}}`
	for _, src := range []string{
		`alert.type`, `alert.type == "phishing" && alert.n > 1`, `alert["type"]`, `alert.missing`, `alert.a.b`,
		`alert.a.b[1].c`, `alert.a.e.f`, `alert.s.x`, `alert.tags.x`, `alert.tags[0]`, `alert.n.x`, `alert.a.b.c`,
		`alert?.a.b`, `alert.a?.e?.f`, `alert.a.e?.f.g`, `alert.missing ?? "d"`, `alert.a.e ?? alert.type`,
		`"a" in alert.tags`, `alert.sender.domain endsWith ".example"`, `any(alert.endpoints, .os == "linux")`,
		`filter(alert.endpoints, .id == "2")`, `map(alert.endpoints, #.id)`, `map(alert.endpoints, #?.os)`,
		`{"x": {"y": 1}}.x.y`, `{"x": 1}.z`, `let e = alert.endpoints[0]; e.os + e.id`, `host.id`, `host.os.name`,
		`vars.v`, `vars.v.w`, `steps.q.output.tasks`, `steps.q.status`, `headers.h`, `$env.alert.type`,
		`alert.a.b[5]`, `len(alert.tags) + alert.n`, `alert.type.length`, `dig(alert, "a.b.1.c", "x")`,
		`toJSON(alert.a)`, `alert.endpoints[1].os == nil`, `alert.x.y.z`, `alert.n + alert.s`, `alrt.type == "x"`,
		`map(alert.a.b, #.c)`, `all(alert.endpoints, .id.x == nil)`, `steps.q.outptu`, `steps.nope.output.x.y`,
		`subject.x`, `now().Year`, `since(alert.t).x`, `alert.n.Hours()`, `[alert][0].type`, `(alert.a).b`, `$env.A`, `$env["alert"].a.b`, `#.x`, `.x`,
		`map(alert.endpoints, map(alert.tags, #.x))`, `reduce(alert.endpoints, #acc + #.id, "")`, `alert.A.A % []`,
		`subject + alert_id`, `now() == now()`, `since("2026-11-22T09:00:00Z")`, `headers["h"] + headers.x`, `vars`, `steps`,
		`host`, `alert`, `nope`, `now`, `any`, `len(steps)`, `steps.q.output?.tasks`, `type(host)`, `alert.x(nope)`,
	} {
		f.Add(src, []byte(alert))
	}
	f.Fuzz(func(t *testing.T, src string, alertJSON []byte) {
		var alert map[string]any
		_ = json.Unmarshal(alertJSON, &alert)
		sc := scope{item: "host"}
		patched, perr := compileFetching(src, sc, false, true)
		plain, err := compileFetching(src, sc, false, false)
		// A member read the patch made is typed any where expr's own read of a member of any is
		// typed unknown, so a type error may name the one or the other, at the same place.
		if (perr == nil) != (err == nil) || perr != nil && errorAt(perr) != errorAt(err) {
			t.Fatalf("compile %q: %v with the patch, %v without", src, perr, err)
		}
		if err != nil {
			return
		}
		run := fuzzRunner(alert)
		got, gerr := run(patched)
		want, werr := run(plain)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(forDeepEqual(got), forDeepEqual(want)) {
			t.Fatalf("%q: %#v, %v with the patch; %#v, %v without", src, got, gerr, want, werr)
		}
	})
}

// fuzzRunner evaluates programs against one environment made from alert, the same for every
// program, so `$env` is the same value.
func fuzzRunner(alert map[string]any) func(p *program) (any, error) {
	env := &Env{Alert: alert, Subject: "soar.alerts.x", AlertID: "id-1", Headers: map[string]string{"h": "v"}, Now: testNow,
		Vars:  map[string]any{"v": map[string]any{"w": 1.0}, "n": int64(3)},
		Steps: map[string]StepState{"q": {Status: "succeeded", Output: map[string]any{"tasks": []any{"t"}}}}}
	x := env.exprEnv(env.Vars, alert["a"])
	return func(p *program) (any, error) {
		r := newRenderer(x)
		defer r.release()
		return r.run(p)
	}
}

// The closures of fastExpr yield what expr's VM yields, or leave the expression to it: whatever
// the expression and the alert, as a condition or as a value, the same value or the same error.
// A condition's fieldGuard rules out only alerts for which the VM finds it false.
func FuzzFastExpr(f *testing.F) {
	const alert = `{"type": "phishing", "n": 2, "f": 2.5, "big": 12345678901234567890, "s": "abc", "e": "",
		"tags": ["a", "b", 2], "a": {"b": [1, {"c": "d"}], "e": null, "t": true}, "ok": true,
		"sender": "x@evil-1.example", "severity": "high", "score": 7}`
	for _, src := range []string{
		`alert.type == "malware-1"`, `alert.severity in ["critical", "high"] && alert.score > 5`,
		`alert.source == "edr-2" || "quarantine-2" in alert.tags`, `alert.sender endsWith "@evil-1.example" && alert.recipient != nil`,
		`alert.confidenceIndicator == "malicious" && alert.eventId == "ev-never-3"`, `alert.type != "x"`, `!alert.ok`, `not alert.type`,
		`alert.n > 1`, `alert.n < 2.5`, `alert.f >= alert.n`, `alert.s <= "abd"`, `alert.big > 1`, `alert.big == 12345678901234567890`,
		`alert.missing > 1`, `alert.type > 1`, `alert.a.t && true`, `alert.a.e || true`, `alert.type && true`, `alert.ok or alert.missing`,
		`alert.a.b`, `alert.a.e.f`, `alert.s.x`, `alert.tags.x`, `alert.n in alert.tags`, `2 in alert.tags`, `"a" in alert.a`,
		`alert.n in ["a", "b"]`, `nil in ["", "b"]`, `alert.n in [1, 2]`, `alert.type in alert.s`, `alert.s startsWith "a"`,
		`alert.s contains "b"`, `alert.missing endsWith "x"`, `alert.n endsWith "x"`, `alert.s matches "^a.c$"`, `alert.n matches "2"`,
		`alert.missing matches "x"`, `alert.s matches alert.type`, `vars.v.w == 1`, `vars.n > 2`, `foreach_item == nil`, `host.b`,
		`subject == "soar.alerts.x"`, `alert_id startsWith "id"`, `alert.type`, `alert.n`, `alert.missing`, `nil`, `1 == 1.0`, `true`,
		`alert.e == ""`, `alert.a == nil`, `alert == nil`, `alert.a.b == nil`, `alert.tags == ["a", "b", 2]`, `"x" + alert.s == "xabc"`,
		`len(alert.tags) > 1`, `steps.q.status == "succeeded"`, `headers.h == "v"`, `$env.alert.type == "phishing"`, `alert?.type == "x"`,
		`alert.n + 1 > 2`, `-alert.n < 0`, `alert.score > 5 and alert.severity == "high"`, `(alert.n > 1) == true`,
		`alert.type == "phishing" && alert.n > 1`, `"phishing" == alert.type and alert.a.e.f`, `alert.type == "x" && alert.a.e.f`,
		`alert.severity in ["high", ""] && alert.score > 5`, `alert.missing in ["", "b"] && true`, `alert.n in ["a"] && true`,
		`alert.type == "phishing" && alert.s == "abc" && alert.n == 2`, `alert["type"] == "x" || true`, `alert.a == "x" && true`,
		// expr folds `x && true` to x and `x || true` to true, so the seeds above never reach the
		// fallbacks for a side that is not a bool, or a member of what is not an object: these do.
		`alert.type && alert.ok`, `alert.a.e || alert.ok`, `alert.s.x > 1`, `1 < alert.s.x`, `alert.a.e.f matches "x"`,
		`alert.s.x == "a"`,
	} {
		f.Add(src, []byte(alert))
	}
	f.Fuzz(func(t *testing.T, src string, alertJSON []byte) {
		alert, err := jsonval.Decode(alertJSON)
		obj, _ := alert.(map[string]any)
		if err != nil {
			obj = nil
		}
		run := fuzzRunner(obj)
		for _, asBool := range []bool{false, true} {
			p, err := compile(src, scope{item: "host"}, asBool)
			if err != nil {
				continue
			}
			vmOnly := *p
			vmOnly.fast = nil
			want, werr := run(&vmOnly)
			// A condition's guard rules out only alerts the VM finds it false for, without error.
			if p.guard != nil && !p.guard.mayHold(obj) && (werr != nil || want != false) {
				t.Fatalf("%q: the guard rules the alert out, but the VM says %#v, %v", src, want, werr)
			}
			if p.fast == nil {
				continue
			}
			got, gerr := run(p)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(forDeepEqual(got), forDeepEqual(want)) {
				t.Fatalf("%q (as bool %v): %#v, %v by the closures; %#v, %v by the VM", src, asBool, got, gerr, want, werr)
			}
		}
	})
}

// forDeepEqual is v for reflect.DeepEqual, with what DeepEqual never finds equal made equal: NaN,
// and functions (now, since), which are new closures in every environment.
func forDeepEqual(v any) any {
	switch t := v.(type) {
	case float64:
		if math.IsNaN(t) {
			return "NaN"
		}
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = forDeepEqual(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = forDeepEqual(e)
		}
		return out
	}
	if v != nil && reflect.TypeOf(v).Kind() == reflect.Func {
		return "func"
	}
	return v
}

// errorAt is where an expression's error is, or its message when it has no position.
func errorAt(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Sprintf("%d:%d", fe.Line, fe.Column)
	}
	return err.Error()
}
