package playbook

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/riposte-soar/riposte/internal/actions"
)

var testNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func stepByID(tb testing.TB, b *Playbook, id string) *Step {
	tb.Helper()
	for _, s := range b.Steps {
		if s.ID == id {
			return s
		}
	}
	tb.Fatalf("playbook %q has no step %q", b.Name, id)
	return nil
}

func TestRender(t *testing.T) {
	t.Parallel()
	books := loadValid(t)
	incidentAlert := map[string]any{"incidentId": "inc-1", "severity": 8.0, "ids": []any{"a", "b"}}
	closed := map[string]StepState{"close": {Status: "succeeded", Output: map[string]any{"done": true}}}
	tests := []struct {
		name     string
		playbook string
		step     string
		env      *Env
		want     actions.Inputs
		wantErr  string
	}{
		{
			name: "whole expression keeps its type", playbook: "phishing-quarantine", step: "event",
			env:  &Env{Alert: map[string]any{"eventId": "ev-1"}},
			want: actions.Inputs{"eventId": "ev-1"},
		},
		{
			name: "list expression and interpolation with vars, alert_id and now()", playbook: "phishing-quarantine", step: "quarantine",
			env:  &Env{Alert: map[string]any{"entityId": "ent-1"}, AlertID: "alert-9", Now: testNow},
			want: actions.Inputs{"entityIds": []any{"ent-1"}, "entityActionParam": "by riposte for alert-9 on 2026-11-22"},
		},
		{
			name: "env vars override the playbook's", playbook: "phishing-quarantine", step: "quarantine",
			env:  &Env{Alert: map[string]any{"entityId": "ent-1"}, AlertID: "alert-9", Now: testNow, Vars: map[string]any{"actor": "soc"}},
			want: actions.Inputs{"entityIds": []any{"ent-1"}, "entityActionParam": "by soc for alert-9 on 2026-11-22"},
		},
		{
			name: "literals: enum string and int", playbook: "incident-close", step: "close",
			env:  &Env{Alert: incidentAlert},
			want: actions.Inputs{"incidentId": "inc-1", "status": "closed", "incidentType": 2},
		},
		{
			name: "missing alert field renders as nil", playbook: "incident-close", step: "close",
			env:  &Env{Alert: map[string]any{}},
			want: actions.Inputs{"incidentId": nil, "status": "closed", "incidentType": 2},
		},
		{
			name: "nested maps and lists, typed values, earlier step output", playbook: "incident-close", step: "notify",
			env: &Env{Alert: incidentAlert, AlertID: "alert-9", Steps: closed},
			want: actions.Inputs{
				"subject": "notify.soc",
				"data": map[string]any{
					"text":    `incident inc-1 closed (severity 8, ids ["a","b"])`,
					"count":   2,
					"first":   "a",
					"done":    true,
					"meta":    map[string]any{"by": "riposte", "n": 1},
					"list":    []any{1, "two", "inc-1", 3.5, true, nil},
					"literal": "plain",
				},
				"headers": map[string]any{"X-Alert": "alert-9"},
			},
		},
		{
			name: "error names the step and the input", playbook: "incident-close", step: "notify",
			env:     &Env{Alert: map[string]any{"incidentId": "inc-1"}, Steps: closed},
			wantErr: "step \"notify\" input \"data\": count: `len(alert.ids)`: invalid argument for len (type <nil>) (1:1)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := stepByID(t, books[tt.playbook], tt.step).Render(tt.env)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Render error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			// DeepEqual compares dynamic types too: an int must not come out as int64 or float64.
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Render =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

// Rendered maps and lists belong to the caller: changing one must not change the next render.
func TestRenderReturnsFreshValues(t *testing.T) {
	t.Parallel()
	s := stepByID(t, loadValid(t)["incident-close"], "notify")
	env := &Env{Alert: map[string]any{"incidentId": "i", "ids": []any{"a"}}}
	first, err := s.Render(env)
	if err != nil {
		t.Fatal(err)
	}
	first["data"].(map[string]any)["list"].([]any)[0] = "changed"
	second, err := s.Render(env)
	if err != nil {
		t.Fatal(err)
	}
	if got := second["data"].(map[string]any)["list"].([]any)[0]; got != 1 {
		t.Errorf("second render list[0] = %v, want 1", got)
	}
}

func TestWhen(t *testing.T) {
	t.Parallel()
	books := loadValid(t)
	tests := []struct {
		name     string
		playbook string
		env      *Env
		want     bool
		wantErr  string
	}{
		{"matching alert", "phishing-quarantine",
			&Env{Alert: map[string]any{"type": "phishing", "confidenceIndicator": "malicious"}}, true, ""},
		{"other type", "phishing-quarantine",
			&Env{Alert: map[string]any{"type": "dlp", "confidenceIndicator": "malicious"}}, false, ""},
		{"missing fields are nil, so == is false", "phishing-quarantine",
			&Env{Alert: map[string]any{}}, false, ""},
		{"nil alert", "phishing-quarantine", &Env{}, false, ""},
		{"nil env", "phishing-quarantine", nil, false, ""},
		{"number against vars", "incident-close",
			&Env{Alert: map[string]any{"severity": 8.0}}, true, ""},
		{"below threshold", "incident-close",
			&Env{Alert: map[string]any{"severity": 3.0}}, false, ""},
		{"headers", "incident-close",
			&Env{Alert: map[string]any{"severity": 3.0}, Headers: map[string]string{"Riposte-Force": "yes"}}, true, ""},
		{"env vars override", "incident-close",
			&Env{Alert: map[string]any{"severity": 3.0}, Vars: map[string]any{"min_severity": 2}}, true, ""},
		// Ordering nil against a number is an error in expr, unlike ==: the engine sees it.
		{"missing field in an ordering", "incident-close",
			&Env{Alert: map[string]any{}}, false, "playbook \"incident-close\" when `alert.severity >= vars.min_severity || headers[\"Riposte-Force\"] == \"yes\"`: invalid operation: <nil> >= int (1:16)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := books[tt.playbook].When(tt.env)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("When error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("When = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestShouldRun(t *testing.T) {
	t.Parallel()
	books := loadValid(t)
	quarantine := stepByID(t, books["phishing-quarantine"], "quarantine")
	notify := stepByID(t, books["incident-close"], "notify")
	tests := []struct {
		name string
		step *Step
		env  *Env
		want bool
	}{
		{"step without if", stepByID(t, books["phishing-quarantine"], "event"), &Env{}, true},
		// An absent step reads as the zero StepState: its output fields are nil, not errors.
		{"earlier step absent", quarantine, &Env{}, true},
		{"earlier step skipped", quarantine, &Env{Steps: map[string]StepState{"event": {Status: "skipped"}}}, true},
		{"earlier output says remediated", quarantine,
			&Env{Steps: map[string]StepState{"event": {Status: "succeeded", Output: map[string]any{"state": "remediated"}}}}, false},
		{"earlier output says open", quarantine,
			&Env{Steps: map[string]StepState{"event": {Status: "succeeded", Output: map[string]any{"state": "open"}}}}, true},
		{"status succeeded", notify, &Env{Steps: map[string]StepState{"close": {Status: "succeeded"}}}, true},
		{"status failed", notify, &Env{Steps: map[string]StepState{"close": {Status: "failed", Error: "boom"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.step.ShouldRun(tt.env)
			if err != nil || got != tt.want {
				t.Errorf("ShouldRun = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// The rest of the expression environment, on playbooks too small for a fixture.
func TestExpressionEnvironment(t *testing.T) {
	t.Parallel()
	const tmpl = `name: inline
on: soar.alerts.>
when: %s
steps:
  - id: e
    action: checkpoint.get_event
    with: {eventId: x}
  - id: e2
    if: steps.e.error == "boom"
    action: checkpoint.get_event
    with: {eventId: x}
`
	tests := []struct {
		name    string
		when    string
		env     *Env
		want    bool
		wantErr string
	}{
		{"now() is Env.Now", `now().Year() == 2026 && int(now().Month()) == 11`, &Env{Now: testNow}, true, ""},
		{"now() without Env.Now is the wall clock", `now().After(date("2020-01-01"))`, &Env{}, true, ""},
		{"subject and alert_id", `subject == "soar.alerts.x" && alert_id == "a1"`,
			&Env{Subject: "soar.alerts.x", AlertID: "a1"}, true, ""},
		{"missing header is empty", `headers["X-Nope"] == ""`, &Env{}, true, ""},
		{"missing field is not equal", `alert.nope == "x"`, &Env{Alert: map[string]any{"a": 1}}, false, ""},
		{"missing field is nil", `alert.nope == nil`, &Env{Alert: map[string]any{}}, true, ""},
		{"optional chaining through a missing field", `alert.a?.b == "x"`, &Env{Alert: map[string]any{}}, false, ""},
		{"nil-coalescing default", `(alert.severity ?? 0) >= 7`, &Env{Alert: map[string]any{}}, false, ""},
		{"missing any-typed field as the whole condition is false", `alert.flag`, &Env{Alert: map[string]any{}}, false, ""},
		{"any-typed field that is true", `alert.flag`, &Env{Alert: map[string]any{"flag": true}}, true, ""},
		{"nested JSON", `alert.sender.domain endsWith ".example" && "vip" in alert.tags`,
			&Env{Alert: map[string]any{"sender": map[string]any{"domain": "mail.example"}, "tags": []any{"vip"}}}, true, ""},
		{"going through a missing field is an error", `alert.a.b == "x"`, &Env{Alert: map[string]any{}},
			false, "playbook \"inline\" when `alert.a.b == \"x\"`: cannot fetch b from <nil> (1:9)"},
		{"non-bool at run time is an error", `alert.type`, &Env{Alert: map[string]any{"type": "phishing"}},
			false, "playbook \"inline\" when `alert.type`: invalid operation: bool(string) (1:1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := loadInline(t, strings.Replace(tmpl, "%s", tt.when, 1))
			got, err := b.When(tt.env)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("When error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("When = %v, %v; want %v", got, err, tt.want)
			}
		})
	}

	b := loadInline(t, strings.Replace(tmpl, "%s", "true", 1))
	env := &Env{Steps: map[string]StepState{"e": {Status: "failed", Error: "boom"}}}
	if ok, err := b.Steps[1].ShouldRun(env); err != nil || !ok {
		t.Errorf("steps.e.error: ShouldRun = %v, %v; want true", ok, err)
	}
}

func TestMatchesSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"soar.alerts.checkpoint.>", "soar.alerts.checkpoint.phishing", true},
		{"soar.alerts.checkpoint.>", "soar.alerts.checkpoint.phishing.extra", true},
		{"soar.alerts.checkpoint.>", "soar.alerts.checkpoint", false}, // '>' needs at least one token
		{"soar.alerts.checkpoint.>", "soar.alerts.gravityzone.phishing", false},
		{"soar.alerts.*.phishing", "soar.alerts.checkpoint.phishing", true},
		{"soar.alerts.*.phishing", "soar.alerts.checkpoint.malware", false},
		{"soar.alerts.*", "soar.alerts.checkpoint", true},
		{"soar.alerts.*", "soar.alerts.checkpoint.phishing", false}, // '*' is exactly one token
		{"soar.alerts.*", "soar.alerts", false},
		{"soar.alerts.checkpoint.phishing", "soar.alerts.checkpoint.phishing", true},
		{"soar.alerts.checkpoint.phishing", "soar.alerts.checkpoint.phishin", false},
		{"soar.alerts.checkpoint.phishing", "soar.alerts.checkpoint.phishing.x", false},
		{"soar.alerts.checkpoint.phishing", "soar.alerts.checkpoint", false},
		{">", "anything.at.all", true},
		{"*.*", "a.b", true},
		{"*.*", "a", false},
		{"soar.>", "", false},
		{"soar.*", "soar.", false},
	}
	for _, tt := range tests {
		t.Run(tt.filter+" "+tt.subject, func(t *testing.T) {
			t.Parallel()
			if why := checkFilter(tt.filter); why != "" {
				t.Fatalf("filter %q rejected: %s", tt.filter, why)
			}
			p := &Playbook{On: []string{tt.filter}}
			if got := p.MatchesSubject(tt.subject); got != tt.want {
				t.Errorf("MatchesSubject(%q) with %q = %v, want %v", tt.subject, tt.filter, got, tt.want)
			}
		})
	}

	// A playbook with several filters matches a subject that any of them matches.
	b := loadValid(t)["incident-close"]
	for subject, want := range map[string]bool{
		"soar.alerts.gravityzone.incident": true,
		"soar.alerts.edr.malware":          true,
		"soar.alerts.edr.phishing":         false,
	} {
		if got := b.MatchesSubject(subject); got != want {
			t.Errorf("incident-close MatchesSubject(%q) = %v, want %v", subject, got, want)
		}
	}
}

func TestSplitTemplate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		lits    []string
		exprs   []string
		wantErr string
	}{
		{"plain", []string{"plain"}, nil, ""},
		{"${{ a }}", []string{"", ""}, []string{"a"}, ""},
		{"x ${{a}} y ${{ b.c }}", []string{"x ", " y ", ""}, []string{"a", "b.c"}, ""},
		{`${{ {"a": {"b": 1}} }}`, []string{"", ""}, []string{`{"a": {"b": 1}}`}, ""},
		{`${{ "}}" + '}}' }}!`, []string{"", "!"}, []string{`"}}" + '}}'`}, ""},
		{`${{ "\"}}" }}`, []string{"", ""}, []string{`"\"}}"`}, ""},
		{"${{ a", nil, nil, `unterminated "${{": missing "}}"`},
		{"${{  }}", nil, nil, `empty "${{ }}"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			lits, exprs, err := splitTemplate(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(lits, tt.lits) || !reflect.DeepEqual(exprs, tt.exprs) {
				t.Errorf("splitTemplate = %q, %q, %v; want %q, %q", lits, exprs, err, tt.lits, tt.exprs)
			}
		})
	}
}

func TestToText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{nil, ""},
		{"s", "s"},
		{true, "true"},
		{42, "42"},
		{int64(-7), "-7"},
		{1e6, "1000000"},
		{0.5, "0.5"},
		{12345678901.0, "12345678901"},
		{[]any{"a", 1.0}, `["a",1]`},
		{map[string]any{"b": 1, "a": "<x>"}, `{"a":"<x>","b":1}`},
		{testNow, "2026-11-22T10:00:00Z"},
		{90 * time.Second, "1m30s"},
	}
	for _, tt := range tests {
		if got := toText(tt.in); got != tt.want {
			t.Errorf("toText(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Playbooks are shared by every in-flight alert; the race detector checks that evaluation is
// safe for concurrent use.
func TestConcurrentEvaluation(t *testing.T) {
	t.Parallel()
	b := loadValid(t)["phishing-quarantine"]
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				env := &Env{Alert: map[string]any{"type": "phishing", "confidenceIndicator": "malicious", "eventId": "e", "entityId": "x"},
					AlertID: string(rune('a' + i)), Now: testNow.Add(time.Duration(j) * time.Second)}
				if ok, err := b.When(env); err != nil || !ok {
					t.Errorf("When = %v, %v", ok, err)
					return
				}
				in, err := b.Steps[1].Render(env)
				if err != nil {
					t.Errorf("Render: %v", err)
					return
				}
				if want := "by riposte for " + env.AlertID + " on 2026-11-22"; in["entityActionParam"] != want {
					t.Errorf("entityActionParam = %v, want %q", in["entityActionParam"], want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// One Env may be used by several goroutines at once: the renderer it keeps goes to one
// evaluation at a time, and the others make their own.
func TestEnvSharedByGoroutines(t *testing.T) {
	t.Parallel()
	b := loadValid(t)["phishing-quarantine"]
	env := &Env{Alert: map[string]any{"type": "phishing", "confidenceIndicator": "malicious", "eventId": "e", "entityId": "x"},
		AlertID: "a", Now: testNow}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if ok, err := b.When(env); err != nil || !ok {
					t.Errorf("When = %v, %v", ok, err)
					return
				}
				if in, err := b.Steps[1].Render(env); err != nil || in["entityActionParam"] != "by riposte for a on 2026-11-22" {
					t.Errorf("Render = %v, %v", in, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// An Env keeps its VM between evaluations until Done, and works after Done as before.
func TestEnvDone(t *testing.T) {
	t.Parallel()
	b := loadValid(t)["phishing-quarantine"]
	env := &Env{Alert: map[string]any{"type": "phishing", "confidenceIndicator": "malicious"}, Now: testNow}
	for range 3 {
		if ok, err := b.When(env); err != nil || !ok {
			t.Fatalf("When = %v, %v", ok, err)
		}
		if env.kept == nil || env.kept.r.vm == nil {
			t.Fatal("the Env did not keep its VM between evaluations")
		}
		env.Done()
		if env.kept.r.vm != nil {
			t.Fatal("Done kept the VM")
		}
	}
	var none *Env
	none.Done() // no Env, nothing to hand back
}

// A member read on the alert, on vars or on what the alert holds is no reflective fetch: every
// playbook's `when` reads the alert for every alert (fetchPatch).
func TestMembersReadWithoutReflection(t *testing.T) {
	t.Parallel()
	for _, src := range []string{`alert.type == "x"`, `alert["type"] == "x"`, `alert.sender.domain == "x"`, `vars.v == 1`,
		`any(alert.endpoints, .os == "linux")`, `host.name == "x"`} {
		prog, err := compile(src, scope{item: "host"}, true)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(prog.prog.Bytecode, vm.OpFetch) {
			t.Errorf("%s: compiled with OpFetch:\n%s", src, prog.prog.Disassemble())
		}
	}
}

func BenchmarkWhen(b *testing.B) {
	p := loadValid(b)["phishing-quarantine"]
	env := &Env{Alert: map[string]any{"type": "phishing", "confidenceIndicator": "malicious"}, Now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := p.When(env); err != nil || !ok {
			b.Fatalf("When = %v, %v", ok, err)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	s := stepByID(b, loadValid(b)["phishing-quarantine"], "quarantine")
	env := &Env{Alert: map[string]any{"entityId": "ent-1"}, AlertID: "alert-9", Now: testNow}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Render(env); err != nil {
			b.Fatal(err)
		}
	}
}

func TestConcurrencyKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", `name: a
on: [soar.alerts.>]
concurrency_key: "mailbox-${{ alert.mailbox }}"
steps:
  - {id: q, action: checkpoint.quarantine_entity, with: {entityIds: "${{ [alert.entityId] }}"}}
`)
	write("b.yaml", `name: b
on: [soar.alerts.>]
concurrency_key: ${{ alert.endpointId }}
steps:
  - {id: q, action: checkpoint.quarantine_entity, with: {entityIds: "${{ [alert.entityId] }}"}}
`)
	pbs, err := LoadDir(dir, testCatalogue(t))
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Alert: map[string]any{"mailbox": "ceo@example.com"}}
	if k, err := pbs[0].ConcurrencyKey(env); err != nil || k != "mailbox-ceo@example.com" || !pbs[0].HasConcurrencyKey() {
		t.Errorf("a: %q, %v", k, err)
	}
	if k, err := pbs[1].ConcurrencyKey(env); err != nil || k != "" {
		t.Errorf("b with no endpointId: %q, %v; want no key", k, err)
	}
}

// Matching runs for every alert and playbook: the server's matcher must not allocate.
func BenchmarkMatchesSubject(b *testing.B) {
	p := loadValid(b)["incident-close"]
	b.ReportAllocs()
	for b.Loop() {
		if !p.MatchesSubject("soar.alerts.edr.malware") {
			b.Fatal("no match")
		}
	}
}
