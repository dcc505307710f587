package playbook_test

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// The examples of docs/playbooks.md, in testdata/examples, loaded with the worker's catalogue
// and run as the engine runs them.

var exampleNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func loadExample(tb testing.TB, name string) *playbook.Playbook {
	tb.Helper()
	books, err := playbook.LoadFiles([]string{filepath.Join("testdata", "examples", name)}, realCatalogue(tb))
	if err != nil {
		tb.Fatalf("load %s:\n%v", name, err)
	}
	return books[0]
}

func TestExampleVars(t *testing.T) {
	t.Parallel()
	b := loadExample(t, "vars.yaml")
	h := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	env := &playbook.Env{Alert: map[string]any{"incidentId": "inc-1", "endpoint": map[string]any{"id": "ep-1"}, "sha256": []any{h, h}}, Now: exampleNow}
	vars, err := b.EvalVars(env)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"endpoint": "ep-1", "hashes": []any{h}, "label": "incident inc-1 on ep-1", "kind": "incidents"}
	if !reflect.DeepEqual(vars, want) {
		t.Errorf("vars = %#v, want %#v", vars, want)
	}
	env.Vars = vars // what the engine does, once per run, before When
	if ok, err := b.When(env); err != nil || !ok {
		t.Errorf("When = %v, %v", ok, err)
	}
	if k, err := b.ConcurrencyKey(env); err != nil || k != "ep-1" {
		t.Errorf("ConcurrencyKey = %q, %v", k, err)
	}
	in, err := b.Steps[0].Render(env)
	if err != nil || !reflect.DeepEqual(in, actions.Inputs{"hashType": "sha256", "hashList": []any{h}, "sourceInfo": "riposte: incident inc-1 on ep-1"}) {
		t.Errorf("blocklist inputs = %v, %v", in, err)
	}
	in, err = b.Steps[1].Render(env)
	if err != nil || in["note"] != "riposte blocklisted 1 hash(es) for incident inc-1 on ep-1" || in["type"] != "incidents" {
		t.Errorf("note inputs = %v, %v", in, err)
	}
	// The other shape of alert: vars fall back, when skips an alert without an endpoint.
	vars, err = b.EvalVars(&playbook.Env{Alert: map[string]any{"endpointId": "ep-2"}})
	if err != nil || vars["endpoint"] != "ep-2" || len(vars["hashes"].([]any)) != 0 {
		t.Errorf("vars from endpointId = %v, %v", vars, err)
	}
	env = &playbook.Env{Alert: map[string]any{}}
	if env.Vars, err = b.EvalVars(env); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.When(env); err != nil || ok {
		t.Errorf("When without an endpoint = %v, %v; want false", ok, err)
	}
}

func TestExampleForeach(t *testing.T) {
	t.Parallel()
	b := loadExample(t, "foreach.yaml")
	isolate, notify := b.Steps[0], b.Steps[1]
	env := &playbook.Env{Alert: map[string]any{"endpoints": []any{
		map[string]any{"id": "ep-1", "os": "windows"},
		map[string]any{"id": "ep-2", "os": "linux"},
		map[string]any{"id": "ep-3", "os": "macos"},
	}}, Steps: map[string]playbook.StepState{}}
	if !isolate.HasForEach() || isolate.As != "endpoint" || isolate.OnError != playbook.OnErrorContinue {
		t.Fatalf("isolate: HasForEach %v, As %q, OnError %q", isolate.HasForEach(), isolate.As, isolate.OnError)
	}
	items, err := isolate.Items(env)
	if err != nil || len(items) != 3 {
		t.Fatalf("Items = %v, %v", items, err)
	}
	// What the engine does: each item on its own, its if first; the outputs make a list.
	var sent []string
	var outputs []any
	for _, it := range items {
		run, err := isolate.ShouldRunItem(env, it)
		if err != nil {
			t.Fatal(err)
		}
		if !run {
			continue
		}
		in, err := isolate.RenderItem(env, it)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, in["endpointId"].(string))
		outputs = append(outputs, map[string]any{"endpointId": in["endpointId"]})
	}
	if want := []string{"ep-1", "ep-3"}; !reflect.DeepEqual(sent, want) {
		t.Errorf("isolated %v, want %v", sent, want)
	}
	env.Steps["isolate"] = playbook.StepState{Status: "succeeded", Output: outputs}
	in, err := notify.Render(env)
	if err != nil || in["data"] != "isolation requested for 2 endpoint(s)" {
		t.Errorf("notify inputs = %v, %v", in, err)
	}
	// No endpoints at all: no items, and no error.
	if items, err := isolate.Items(&playbook.Env{Alert: map[string]any{}}); err != nil || len(items) != 0 {
		t.Errorf("Items without endpoints = %v, %v", items, err)
	}
}

func TestExampleDefaults(t *testing.T) {
	t.Parallel()
	b := loadExample(t, "defaults.yaml")
	closeStep, notify := b.Steps[0], b.Steps[1]
	want := actions.RetryPolicy{MaxAttempts: 6, InitialInterval: time.Second, MaxInterval: 20 * time.Second, AttemptTimeout: 15 * time.Second}
	if closeStep.Retry != want || closeStep.OnError != playbook.OnErrorContinue {
		t.Errorf("close: %+v %q; want %+v continue", closeStep.Retry, closeStep.OnError, want)
	}
	want.MaxAttempts = 2
	if notify.Retry != want || notify.OnError != playbook.OnErrorStop {
		t.Errorf("notify: %+v %q; want %+v stop", notify.Retry, notify.OnError, want)
	}
}

func TestExampleHelpers(t *testing.T) {
	t.Parallel()
	b := loadExample(t, "helpers.yaml")
	alert := func(ip, domain, received, attachment string) *playbook.Env {
		return &playbook.Env{Now: exampleNow, Alert: map[string]any{
			"sender":     map[string]any{"ip": ip, "domain": domain},
			"receivedAt": received, "entityId": "ent-1",
			"attachment": map[string]any{"name": attachment},
		}}
	}
	tests := []struct {
		name      string
		env       *playbook.Env
		when, run bool
	}{
		{"outside sender, recent, executable", alert("203.0.113.9", "evil.test", "2026-11-22T08:00:00Z", "Invoice.EXE"), true, true},
		{"outside sender, a pdf in a folder", alert("203.0.113.9", "evil.test", "2026-11-22T08:00:00Z", "scans/invoice-42.pdf"), true, true},
		{"outside sender, a plain text", alert("203.0.113.9", "evil.test", "2026-11-22T08:00:00Z", "notes.txt"), true, false},
		{"internal sender", alert("10.2.3.4", "evil.test", "2026-11-22T08:00:00Z", "a.exe"), false, true},
		{"our own domain", alert("203.0.113.9", "mail.Example.com", "2026-11-22T08:00:00Z", "a.exe"), false, true},
		{"older than a day", alert("203.0.113.9", "evil.test", "2026-11-20T08:00:00Z", "a.exe"), false, true},
	}
	for _, tt := range tests {
		vars, err := b.EvalVars(tt.env)
		if err != nil {
			t.Fatal(err)
		}
		tt.env.Vars = vars
		if ok, err := b.When(tt.env); err != nil || ok != tt.when {
			t.Errorf("%s: When = %v, %v; want %v", tt.name, ok, err, tt.when)
		}
		if ok, err := b.Steps[0].ShouldRun(tt.env); err != nil || ok != tt.run {
			t.Errorf("%s: ShouldRun = %v, %v; want %v", tt.name, ok, err, tt.run)
		}
	}
	// A receivedAt that is not a time fails the condition, naming the playbook and the expression.
	env := alert("203.0.113.9", "evil.test", "yesterday", "a.exe")
	env.Vars, _ = b.EvalVars(env)
	if _, err := b.When(env); err == nil {
		t.Error("When with a bad receivedAt: no error")
	} else if want := `playbook "helpers-example" when `; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Errorf("When error %q does not start with %q", err, want)
	}
}

func TestExampleShadow(t *testing.T) {
	t.Parallel()
	b := loadExample(t, "shadow.yaml")
	if !b.Shadow {
		t.Fatal("Shadow = false for mode: shadow")
	}
	env := &playbook.Env{Alert: map[string]any{"severity": "critical", "endpointId": "ep-1"}}
	if ok, err := b.When(env); err != nil || !ok {
		t.Errorf("When = %v, %v", ok, err)
	}
	if in, err := b.Steps[0].Render(env); err != nil || in["endpointId"] != "ep-1" {
		t.Errorf("Render = %v, %v", in, err)
	}
}
