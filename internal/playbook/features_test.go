package playbook

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
)

const varsPlaybook = `name: vars
on: soar.alerts.>
vars:
  host: ${{ lower(alert.host) }}
  label: "host ${{ vars.host }} on ${{ subject }}"
  ids: ${{ [alert.id, alert_id] }}
  n: 3
  started: ${{ now() }}
  tags: [mail, "${{ vars.host }}"]
  nested: {by: riposte, host: "${{ vars.host }}"}
when: vars.host != "" && vars.n == 3
concurrency_key: host-${{ vars.host }}
steps:
  - id: e
    if: '"mail" in vars.tags'
    action: checkpoint.get_event
    with: {eventId: "${{ vars.label }}"}
`

// Vars are expressions over the alert, evaluated in order, each seeing those before it, with
// the types the expressions give.
func TestEvalVars(t *testing.T) {
	t.Parallel()
	b := loadInline(t, varsPlaybook)
	if b.Vars != nil {
		t.Errorf("Vars = %v, want nil: some vars are expressions", b.Vars)
	}
	env := &Env{Alert: map[string]any{"host": "WEB1", "id": 7.0}, Subject: "soar.alerts.x", AlertID: "a-1", Now: testNow}
	got, err := b.EvalVars(env)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"host": "web1", "label": "host web1 on soar.alerts.x", "ids": []any{7.0, "a-1"}, "n": 3,
		"started": testNow, "tags": []any{"mail", "web1"}, "nested": map[string]any{"by": "riposte", "host": "web1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EvalVars =\n%#v\nwant\n%#v", got, want)
	}

	// Evaluated once and put in Env.Vars, as the engine does, or evaluated at each call when
	// Env.Vars is nil: the same values either way.
	for name, e := range map[string]*Env{"evaluated once": {Alert: env.Alert, Subject: env.Subject, Vars: got}, "evaluated per call": {Alert: env.Alert, Subject: env.Subject}} {
		if ok, err := b.When(e); err != nil || !ok {
			t.Errorf("%s: When = %v, %v", name, ok, err)
		}
		if k, err := b.ConcurrencyKey(e); err != nil || k != "host-web1" {
			t.Errorf("%s: ConcurrencyKey = %q, %v", name, k, err)
		}
		if ok, err := b.Steps[0].ShouldRun(e); err != nil || !ok {
			t.Errorf("%s: ShouldRun = %v, %v", name, ok, err)
		}
		if in, err := b.Steps[0].Render(e); err != nil || in["eventId"] != "host web1 on soar.alerts.x" {
			t.Errorf("%s: Render = %v, %v", name, in, err)
		}
	}

	// Env.Vars, when set, is what expressions see, whatever the playbook says.
	if in, err := b.Steps[0].Render(&Env{Vars: map[string]any{"label": "given"}}); err != nil || in["eventId"] != "given" {
		t.Errorf("Render with Env.Vars = %v, %v; want eventId given", in, err)
	}

	// Each evaluation is fresh: changing one run's values changes no other's.
	got["tags"].([]any)[0] = "changed"
	again, _ := b.EvalVars(env)
	if again["tags"].([]any)[0] != "mail" {
		t.Errorf("a second EvalVars shares the first's list: %v", again["tags"])
	}
}

func TestEvalVarsLiteralAndNone(t *testing.T) {
	t.Parallel()
	b := loadValid(t)["incident-close"]
	got, err := b.EvalVars(&Env{})
	if err != nil || !reflect.DeepEqual(got, b.Vars) {
		t.Errorf("EvalVars of literal vars = %v, %v; want %v", got, err, b.Vars)
	}
	none := loadInline(t, "name: none\non: x\nsteps: [{id: e, action: checkpoint.get_event, with: {eventId: x}}]\n")
	if got, err := none.EvalVars(nil); err != nil || got == nil || len(got) != 0 {
		t.Errorf("EvalVars without vars = %#v, %v; want an empty map", got, err)
	}
}

// A var that fails to evaluate names the playbook, the var and the expression, whether the
// engine evaluates it or a condition needs it.
func TestEvalVarsError(t *testing.T) {
	t.Parallel()
	b := loadInline(t, `name: broken-var
on: soar.alerts.>
vars:
  ok: fine
  domain: ${{ alert.sender.domain }}
when: vars.domain == "example.com"
steps:
  - {id: e, action: checkpoint.get_event, with: {eventId: x}}
`)
	const want = "playbook \"broken-var\" var \"domain\": `alert.sender.domain`: cannot fetch domain from <nil> (1:14)"
	if _, err := b.EvalVars(&Env{Alert: map[string]any{}}); err == nil || err.Error() != want {
		t.Errorf("EvalVars error = %v, want %q", err, want)
	}
	if _, err := b.When(&Env{Alert: map[string]any{}}); err == nil || err.Error() != want {
		t.Errorf("When error = %v, want %q", err, want)
	}
}

const foreachPlaybook = `name: each
on: soar.alerts.>
steps:
  - id: isolate
    foreach: ${{ alert.endpoints }}
    if: item.os != "linux"
    action: checkpoint.get_event
    with: {eventId: "${{ item.id }}"}
  - id: named
    foreach: ${{ steps.isolate.output }}
    as: result
    if: result?.taskId != nil
    action: checkpoint.quarantine_entity
    with: {entityIds: "${{ [result.taskId] }}", entityActionParam: "for ${{ alert.case }}"}
  - id: literal
    foreach: [a, "${{ alert.case }}"]
    action: checkpoint.get_event
    with: {eventId: "${{ item }}"}
  - id: split
    foreach: ${{ split(alert.csv, ",") }}
    action: checkpoint.get_event
    with: {eventId: "${{ item }}"}
  - id: once
    action: checkpoint.get_event
    with: {eventId: x}
`

func TestForeach(t *testing.T) {
	t.Parallel()
	b := loadInline(t, foreachPlaybook)
	endpoints := []any{map[string]any{"id": "e1", "os": "windows"}, map[string]any{"id": "e2", "os": "linux"}}
	env := &Env{
		Alert: map[string]any{"endpoints": endpoints, "case": "c-9", "csv": "x,y"},
		Steps: map[string]StepState{"isolate": {Status: "succeeded", Output: []any{map[string]any{"taskId": "t1"}, nil}}},
	}
	isolate, named, lit, split, once := b.Steps[0], b.Steps[1], b.Steps[2], b.Steps[3], b.Steps[4]

	items, err := isolate.Items(env)
	if err != nil || !reflect.DeepEqual(items, endpoints) {
		t.Fatalf("Items = %v, %v; want the endpoints", items, err)
	}
	if !isolate.HasForEach() || isolate.As != "item" || named.As != "result" || once.HasForEach() || once.As != "" {
		t.Errorf("HasForEach/As: isolate %v %q, named %q, once %v %q", isolate.HasForEach(), isolate.As, named.As, once.HasForEach(), once.As)
	}
	var runs []bool
	var inputs []actions.Inputs
	for _, it := range items {
		ok, err := isolate.ShouldRunItem(env, it)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, ok)
		in, err := isolate.RenderItem(env, it)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, in)
	}
	if !reflect.DeepEqual(runs, []bool{true, false}) {
		t.Errorf("ShouldRunItem = %v, want [true false]", runs)
	}
	if want := []actions.Inputs{{"eventId": "e1"}, {"eventId": "e2"}}; !reflect.DeepEqual(inputs, want) {
		t.Errorf("RenderItem = %v, want %v", inputs, want)
	}

	// A foreach step's output is the list of its items' outputs.
	items, err = named.Items(env)
	if err != nil || len(items) != 2 {
		t.Fatalf("Items over an earlier step's outputs = %v, %v", items, err)
	}
	if ok, err := named.ShouldRunItem(env, items[1]); err != nil || ok {
		t.Errorf("ShouldRunItem(nil output) = %v, %v; want false", ok, err)
	}
	if in, err := named.RenderItem(env, items[0]); err != nil || !reflect.DeepEqual(in, actions.Inputs{"entityIds": []any{"t1"}, "entityActionParam": "for c-9"}) {
		t.Errorf("RenderItem = %v, %v", in, err)
	}

	if items, err := lit.Items(env); err != nil || !reflect.DeepEqual(items, []any{"a", "c-9"}) {
		t.Errorf("literal list Items = %v, %v", items, err)
	}
	if items, err := split.Items(env); err != nil || !reflect.DeepEqual(items, []any{"x", "y"}) {
		t.Errorf("[]string Items = %#v, %v", items, err)
	}
	if items, err := once.Items(env); err != nil || items != nil {
		t.Errorf("Items of a step without foreach = %v, %v; want nil, nil", items, err)
	}
	empty := &Env{Alert: map[string]any{"endpoints": []any{}}}
	if items, err := isolate.Items(empty); err != nil || items == nil || len(items) != 0 {
		t.Errorf("Items of an empty list = %#v, %v; want an empty, non-nil list", items, err)
	}

	// Items are the caller's.
	items, _ = isolate.Items(env)
	items[0] = "changed"
	if again, _ := isolate.Items(env); !reflect.DeepEqual(again, endpoints) {
		t.Errorf("Items shares its list between calls: %v", again)
	}
}

func TestForeachErrors(t *testing.T) {
	t.Parallel()
	b := loadInline(t, foreachPlaybook)
	tests := []struct {
		name  string
		alert map[string]any
		want  string
	}{
		{"missing field", map[string]any{}, "playbook \"each\" step \"isolate\" foreach `alert.endpoints`: expected a list, got nil"},
		{"a string", map[string]any{"endpoints": "e1"}, "playbook \"each\" step \"isolate\" foreach `alert.endpoints`: expected a list, got string"},
		{"an object", map[string]any{"endpoints": map[string]any{"id": "e1"}}, "playbook \"each\" step \"isolate\" foreach `alert.endpoints`: expected a list, got object"},
	}
	for _, tt := range tests {
		if _, err := b.Steps[0].Items(&Env{Alert: tt.alert}); err == nil || err.Error() != tt.want {
			t.Errorf("%s: Items error = %v, want %q", tt.name, err, tt.want)
		}
	}
	// An item whose if fails names the playbook, the step and the expression.
	const want = "playbook \"each\" step \"isolate\" if `item.os != \"linux\"`: cannot fetch os from <nil> (1:6)"
	if _, err := b.Steps[0].ShouldRunItem(&Env{}, nil); err == nil || err.Error() != want {
		t.Errorf("ShouldRunItem error = %v, want %q", err, want)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	b := loadInline(t, `name: defaults
on: soar.alerts.>
defaults:
  retry: {max_attempts: 2, max_interval: 5s}
  timeout: 10s
  on_error: continue
steps:
  - {id: inherits, action: checkpoint.get_event, with: {eventId: x}}
  - id: own_retry
    action: checkpoint.get_event
    with: {eventId: x}
    retry: {initial_interval: 1s}
  - id: own_all
    action: checkpoint.get_event
    with: {eventId: x}
    retry: {max_attempts: 9, initial_interval: 1s, max_interval: 2s}
    timeout: 0
    on_error: stop
`)
	want := []stepView{
		{"inherits", "checkpoint.get_event", 8, actions.RetryPolicy{MaxAttempts: 2, InitialInterval: 500 * time.Millisecond, MaxInterval: 5 * time.Second, AttemptTimeout: 10 * time.Second}, OnErrorContinue},
		// A step's retry sets what it names; the rest comes from the defaults.
		{"own_retry", "checkpoint.get_event", 9, actions.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Second, MaxInterval: 5 * time.Second, AttemptTimeout: 10 * time.Second}, OnErrorContinue},
		{"own_all", "checkpoint.get_event", 13, actions.RetryPolicy{MaxAttempts: 9, InitialInterval: time.Second, MaxInterval: 2 * time.Second}, OnErrorStop},
	}
	if got := viewSteps(b.Steps); !reflect.DeepEqual(got, want) {
		t.Errorf("Steps =\n%+v\nwant\n%+v", got, want)
	}
	// Without defaults, a step has the package's.
	plain := loadValid(t)["incident-close"].Steps[0]
	if plain.Retry != actions.DefaultRetryPolicy() || plain.OnError != OnErrorStop {
		t.Errorf("step without defaults: %+v %q", plain.Retry, plain.OnError)
	}
}

func TestShadow(t *testing.T) {
	t.Parallel()
	const tmpl = "name: m\non: x\n%s\nsteps: [{id: e, action: checkpoint.get_event, with: {eventId: x}}]\n"
	for mode, want := range map[string]bool{"mode: shadow": true, "mode: live": false, "": false} {
		if got := loadInline(t, strings.Replace(tmpl, "%s", mode, 1)).Shadow; got != want {
			t.Errorf("%q: Shadow = %v, want %v", mode, got, want)
		}
	}
}

// A condition that fails at run time says which playbook, which step and which expression.
func TestConditionErrorsNameTheExpression(t *testing.T) {
	t.Parallel()
	b := loadInline(t, `name: conds
on: soar.alerts.>
steps:
  - id: check
    if: |
      inCIDR(alert.ip, "10.0.0.0/8")
        && alert.count > 3
    action: checkpoint.get_event
    with: {eventId: x}
`)
	tests := []struct {
		alert map[string]any
		want  string
	}{
		{map[string]any{}, "playbook \"conds\" step \"check\" if `inCIDR(alert.ip, \"10.0.0.0/8\") && alert.count > 3`: inCIDR: the address must be a string, got nil (1:1)"},
		{map[string]any{"ip": "10.1.1.1"}, "playbook \"conds\" step \"check\" if `inCIDR(alert.ip, \"10.0.0.0/8\") && alert.count > 3`: invalid operation: <nil> > int (2:18)"},
	}
	for _, tt := range tests {
		if _, err := b.Steps[0].ShouldRun(&Env{Alert: tt.alert}); err == nil || err.Error() != tt.want {
			t.Errorf("ShouldRun error =\n%v\nwant\n%s", err, tt.want)
		}
	}
}

// An absent step, or one that left no output, reads as a nil output, now that outputs may be
// lists as well as objects; going further through the nil is an error, as it always was.
func TestAbsentStepOutput(t *testing.T) {
	t.Parallel()
	b := loadInline(t, `name: absent
on: soar.alerts.>
steps:
  - {id: first, action: checkpoint.get_event, with: {eventId: x}}
  - id: second
    if: steps.first.output.state == nil && steps.first.output?.a?.b == nil
    action: checkpoint.get_event
    with: {eventId: "${{ steps.first.output[0] ?? 'none' }}"}
  - id: third
    if: steps.first.output.a.b == nil
    action: checkpoint.get_event
    with: {eventId: x}
`)
	for _, env := range []*Env{{}, {Steps: map[string]StepState{"first": {Status: "failed"}}}} {
		if ok, err := b.Steps[1].ShouldRun(env); err != nil || !ok {
			t.Errorf("ShouldRun = %v, %v; want true", ok, err)
		}
		if in, err := b.Steps[1].Render(env); err != nil || in["eventId"] != "none" {
			t.Errorf("Render = %v, %v", in, err)
		}
		if _, err := b.Steps[2].ShouldRun(env); err == nil || !strings.Contains(err.Error(), "cannot fetch b from <nil>") {
			t.Errorf("going through a nil output: %v", err)
		}
	}
	list := &Env{Steps: map[string]StepState{"first": {Status: "succeeded", Output: []any{"t1"}}}}
	if in, err := b.Steps[1].Render(list); err != nil || in["eventId"] != "t1" {
		t.Errorf("Render with a list output = %v, %v", in, err)
	}
}
