package playbook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
