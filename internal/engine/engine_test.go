package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/playbook"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/<name>, or rewrites the file under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update if the change is intended):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestOutcomeJSON pins the published outcome, field by field and name by name, for a full run
// (one retried step, an output used by later steps, the clock), an unmatched alert, a failed
// run and a simulated run.
func TestOutcomeJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.block.script(func(_ context.Context, call int, in actions.Inputs) (actions.Output, error) {
		f.clock.Advance(1500 * time.Millisecond)
		if call == 1 {
			return nil, errors.New("block on vendor: HTTP 502: bad gateway")
		}
		return actions.Output{"count": len(in.StringList("targets"))}, nil
	})
	a := phishing()
	a.Deliveries = 2
	matched := f.process(t, a)

	unmatched := f.process(t, alertOn("soar.alerts.nothing.here", map[string]any{"id": "x"}))
	failed := f.process(t, alertOn("soar.alerts.stop.x", nil))

	sim := newFixture(t, func(o *engine.Options) { o.Simulated, o.Worker = true, "sim-7" })
	simulated := sim.process(t, alertOn("soar.alerts.skip.it", nil))

	all := map[string][]engine.Outcome{
		"matched": matched.Outcomes, "unmatched": unmatched.Outcomes, "simulated": simulated.Outcomes,
		"failed": failed.Outcomes,
	}
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "outcomes.golden.json", append(b, '\n'))
	if matched.Retry || unmatched.Retry || simulated.Retry {
		t.Errorf("retry set on runs that did not fail: %v %v %v", matched.Retry, unmatched.Retry, simulated.Retry)
	}
	if !failed.Retry {
		t.Error("retry not set on a run whose retryable failure ran out of attempts")
	}
}

// TestOutcomeFields checks the same run without the golden file, so a failure says which field.
func TestOutcomeFields(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	out := only(t, f.process(t, phishing()))

	want := engine.Outcome{
		AlertID: "alert-1", Subject: "soar.alerts.hec.phishing", Playbook: "quarantine",
		Status: engine.StatusSucceeded, Worker: "host-1", Deliveries: 1,
		StartedAt:  time.Date(2026, 11, 22, 10, 0, 0, 123000000, time.UTC),
		FinishedAt: time.Date(2026, 11, 22, 10, 0, 1, 623000000, time.UTC),
	}
	got := out
	got.Steps = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outcome = %+v\nwant      %+v", got, want)
	}
	if out.StartedAt.Location() != time.UTC || out.FinishedAt.Location() != time.UTC {
		t.Errorf("times not in UTC: %v, %v", out.StartedAt, out.FinishedAt)
	}
	wantSteps := []engine.StepOutcome{
		{ID: "lookup", Action: "test.lookup", Status: "succeeded", Attempts: 1,
			Output: map[string]any{"state": "open", "x": "e2", "key": "ev-1"}},
		{ID: "block", Action: "test.block", Status: "succeeded", Attempts: 1,
			Output: map[string]any{"count": 2}},
		{ID: "note", Action: "test.notify", Status: "succeeded", Attempts: 1,
			Output: map[string]any{"sent": true}},
	}
	for i := range out.Steps {
		out.Steps[i].DurationMS = 0
	}
	if !reflect.DeepEqual(out.Steps, wantSteps) {
		t.Errorf("steps = %+v\nwant    %+v", out.Steps, wantSteps)
	}
}

// TestOutputsFlowToLaterSteps checks that `with` and `if` see steps.<id>.output and .status, and
// now() reads the injected clock.
func TestOutputsFlowToLaterSteps(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	only(t, f.process(t, phishing()))

	if got := f.block.inputs(); len(got) != 1 || !reflect.DeepEqual(got[0], actions.Inputs{
		"targets": []string{"e1", "e2"},
		"reason":  "riposte: state open for alert-1",
	}) {
		t.Errorf("block inputs = %v, want targets [e1 e2] (the lookup's x) and the rendered reason", got)
	}
	// The note runs after the clock moved 1.5s inside block: now() is the run's start.
	if got := f.notify.inputs(); len(got) != 1 || got[0]["text"] != "blocked 2 at 10:00:00 on soar.alerts.hec.phishing" {
		t.Errorf("note inputs = %v", got)
	}

	// The lookup says remediated: block's `if` is false, and note's `if` on block's status too.
	g := newFixture(t, nil)
	g.lookup.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		return actions.Output{"state": "remediated"}, nil
	})
	out := only(t, g.process(t, phishing()))
	if got := stepStatuses(out); !slices.Equal(got, []string{"lookup=succeeded", "block=skipped", "note=skipped"}) {
		t.Errorf("steps %v, want block and note skipped", got)
	}
	if out.Status != engine.StatusSucceeded {
		t.Errorf("status %q, want succeeded: skipped steps are not failures", out.Status)
	}
	if n := g.block.callCount() + g.notify.callCount(); n != 0 {
		t.Errorf("%d calls to skipped steps' actions", n)
	}
	for _, st := range out.Steps[1:] {
		if st.Attempts != 0 || st.Output != nil || st.Error != "" {
			t.Errorf("skipped step %s = %+v, want no attempts, output or error", st.ID, st)
		}
	}
}

func TestSeveralPlaybooksRunInNameOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	res := f.process(t, alertOn("soar.alerts.multi.one", nil))
	var names []string
	for _, o := range res.Outcomes {
		names = append(names, o.Playbook)
		if o.Status != engine.StatusSucceeded || len(o.Steps) != 1 {
			t.Errorf("%s: status %s with %d steps", o.Playbook, o.Status, len(o.Steps))
		}
	}
	if !slices.Equal(names, []string{"alpha", "beta"}) {
		t.Errorf("outcomes for %v, want [alpha beta]", names)
	}
	var texts []any
	for _, c := range f.log.all() {
		texts = append(texts, c.in["text"])
	}
	if !reflect.DeepEqual(texts, []any{"alpha", "beta"}) {
		t.Errorf("actions ran as %v, want alpha then beta", texts)
	}

	// beta's `on` is multi.*: a deeper subject matches only alpha.
	res = f.process(t, alertOn("soar.alerts.multi.one.two", nil))
	if o := only(t, res); o.Playbook != "alpha" {
		t.Errorf("outcome for %q, want alpha only", o.Playbook)
	}
}

func TestUnmatched(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, subject, typ string }{
		{"no playbook on the subject", "soar.alerts.other.kind", "phishing"},
		{"when is false", "soar.alerts.hec.phishing", "malware"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			a := alertOn(tt.subject, map[string]any{"type": tt.typ})
			a.Deliveries = 3
			res := f.process(t, a)
			out := only(t, res)
			want := engine.Outcome{
				AlertID: a.ID, Subject: tt.subject, Playbook: "", Status: engine.StatusUnmatched,
				StartedAt: out.StartedAt, FinishedAt: out.FinishedAt, Worker: "host-1", Deliveries: 3,
				Steps: []engine.StepOutcome{},
			}
			if !reflect.DeepEqual(out, want) {
				t.Errorf("outcome = %+v\nwant      %+v", out, want)
			}
			if ms := t0.Truncate(time.Millisecond); !out.StartedAt.Equal(ms) || !out.FinishedAt.Equal(ms) {
				t.Errorf("times %v, %v; want the clock's %v", out.StartedAt, out.FinishedAt, t0)
			}
			if res.Retry {
				t.Error("retry set for an unmatched alert")
			}
			b, _ := json.Marshal(out)
			if !bytes.Contains(b, []byte(`"steps":[]`)) || !bytes.Contains(b, []byte(`"playbook":""`)) {
				t.Errorf("unmatched outcome JSON %s, want \"steps\":[] and \"playbook\":\"\"", b)
			}
			if n := len(f.log.all()); n != 0 {
				t.Errorf("%d actions called", n)
			}
		})
	}
}

func TestIfFalseSkipsOnlyThatStep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	out := only(t, f.process(t, alertOn("soar.alerts.skip.it", map[string]any{"run": false})))
	if got := stepStatuses(out); !slices.Equal(got, []string{"never=skipped", "after=succeeded"}) {
		t.Errorf("steps %v", got)
	}
	if out.Status != engine.StatusSucceeded {
		t.Errorf("status %q, want succeeded", out.Status)
	}
	if got := f.notify.inputs(); len(got) != 1 || got[0]["text"] != "never was skipped" {
		t.Errorf("notify inputs %v, want only the second step's, reading the first's status", got)
	}
}

func TestFailureStopsTheRun(t *testing.T) {
	t.Parallel()
	t.Run("retryable, exhausted", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		res := f.process(t, alertOn("soar.alerts.stop.x", nil))
		out := only(t, res)
		if got := stepStatuses(out); !slices.Equal(got, []string{"first=failed", "second=skipped"}) {
			t.Errorf("steps %v", got)
		}
		if out.Status != engine.StatusFailed {
			t.Errorf("status %q, want failed", out.Status)
		}
		if st := out.Steps[0]; st.Attempts != 3 || st.Error != errVendorDown.Error() || st.Output != nil {
			t.Errorf("failed step = %+v, want 3 attempts and the vendor's error", st)
		}
		if !res.Retry {
			t.Error("retry not set after a retryable failure ran out of attempts")
		}
		if f.flaky.callCount() != 3 || f.notify.callCount() != 0 {
			t.Errorf("calls: flaky %d, notify %d; want 3 and 0", f.flaky.callCount(), f.notify.callCount())
		}
	})
	t.Run("permanent", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		f.flaky.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
			return nil, actions.Permanent(errors.New("get verdict from vendor: HTTP 404: no such event"))
		})
		res := f.process(t, alertOn("soar.alerts.stop.x", nil))
		out := only(t, res)
		if got := stepStatuses(out); !slices.Equal(got, []string{"first=failed", "second=skipped"}) {
			t.Errorf("steps %v", got)
		}
		if st := out.Steps[0]; st.Attempts != 1 || st.Error != "get verdict from vendor: HTTP 404: no such event" {
			t.Errorf("failed step = %+v, want 1 attempt and the vendor's error", st)
		}
		if res.Retry {
			t.Error("retry set after a permanent failure")
		}
	})
}

func TestOnErrorContinue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	res := f.process(t, alertOn("soar.alerts.continue.x", nil))
	out := only(t, res)
	if got := stepStatuses(out); !slices.Equal(got, []string{"first=failed", "second=succeeded"}) {
		t.Errorf("steps %v", got)
	}
	if out.Status != engine.StatusFailed {
		t.Errorf("status %q, want failed", out.Status)
	}
	if res.Retry {
		t.Error("retry set for a failure under on_error: continue")
	}
	want := "first failed: " + errVendorDown.Error()
	if got := f.notify.inputs(); len(got) != 1 || got[0]["text"] != want {
		t.Errorf("second step inputs %v, want text %q (the first step's status and error)", got, want)
	}
}

func TestRetryAcrossPlaybooks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// Both alpha and beta run; a retryable failure in one makes the whole alert retry.
	f.notify.script(func(_ context.Context, _ int, in actions.Inputs) (actions.Output, error) {
		if in["text"] == "alpha" {
			return nil, errVendorDown
		}
		return actions.Output{}, nil
	})
	res := f.process(t, alertOn("soar.alerts.multi.one", nil))
	if len(res.Outcomes) != 2 || res.Outcomes[0].Status != engine.StatusFailed || res.Outcomes[1].Status != engine.StatusSucceeded {
		t.Fatalf("outcomes %+v, want alpha failed and beta succeeded", res.Outcomes)
	}
	if !res.Retry {
		t.Error("retry not set")
	}
}

func TestRuntimeInputAndIfErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	res := f.process(t, alertOn("soar.alerts.render.x", map[string]any{"entityIds": 42.0, "count": "many"}))
	out := only(t, res)
	if got := stepStatuses(out); !slices.Equal(got, []string{"block=failed", "if_broken=failed"}) {
		t.Fatalf("steps %v", got)
	}
	if n := f.block.callCount(); n != 0 {
		t.Errorf("action called %d times with invalid inputs", n)
	}
	if e := out.Steps[0].Error; !strings.Contains(e, `input "targets"`) {
		t.Errorf("input error %q does not name the input", e)
	}
	if e := out.Steps[1].Error; !strings.Contains(e, "if_broken") || !strings.Contains(e, "if") {
		t.Errorf("if error %q does not name the step", e)
	}
	if res.Retry {
		t.Error("retry set for errors no retry can fix")
	}
}

func TestWhenRuntimeError(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	a := alertOn("soar.alerts.when.x", map[string]any{"count": "many"})
	res := f.process(t, a)
	out := only(t, res)
	if out.Playbook != "when-broken" || out.Status != engine.StatusFailed {
		t.Errorf("outcome %s/%s, want when-broken/failed", out.Playbook, out.Status)
	}
	if !strings.Contains(out.Error, "when-broken") || !strings.Contains(out.Error, "when") {
		t.Errorf("error %q does not say which playbook's when failed", out.Error)
	}
	if out.Steps == nil || len(out.Steps) != 0 {
		t.Errorf("steps %#v, want none (and not null)", out.Steps)
	}
	if out.AlertID != a.ID || out.Worker != "host-1" || out.StartedAt.IsZero() || out.FinishedAt.IsZero() {
		t.Errorf("outcome %+v lacks its alert, worker or times", out)
	}
	if res.Retry {
		t.Error("retry set for a condition no retry can fix")
	}
	if n := f.notify.callCount(); n != 0 {
		t.Errorf("%d steps ran", n)
	}
	b, _ := json.Marshal(out)
	if !bytes.Contains(b, []byte(`"error":"`)) {
		t.Errorf("outcome JSON %s has no error", b)
	}

	// With a number the same playbook runs, and a succeeded outcome has no "error" key.
	out = only(t, f.process(t, alertOn("soar.alerts.when.x", map[string]any{"count": 5.0})))
	if out.Status != engine.StatusSucceeded || out.Error != "" {
		t.Errorf("outcome %+v, want succeeded", out)
	}
	b, _ = json.Marshal(out)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["error"]; ok {
		t.Errorf("succeeded outcome JSON %s has a top-level error", b)
	}
}

func TestSimulatedFlag(t *testing.T) {
	t.Parallel()
	for _, sim := range []bool{false, true} {
		f := newFixture(t, func(o *engine.Options) { o.Simulated = sim })
		for _, a := range []engine.Alert{phishing(), alertOn("soar.alerts.none", nil)} {
			out := only(t, f.process(t, a))
			b, err := json.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			v, present := m["simulated"]
			if sim && v != true {
				t.Errorf("simulated run %s: \"simulated\" = %v, want true", out.Status, v)
			}
			if !sim && present {
				t.Errorf("real run %s: \"simulated\" present (%v), want it left out", out.Status, v)
			}
		}
	}
}

func TestJournalSkipsSucceededSteps(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	// First delivery: lookup succeeds, block keeps failing.
	f.block.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		return nil, errVendorDown
	})
	a := phishing()
	res := f.process(t, a)
	if !res.Retry {
		t.Fatal("first delivery: retry not set")
	}
	if n := f.journal.len(); n != 1 {
		t.Errorf("journal holds %d records after one succeeded step, want 1 (failed steps are not recorded)", n)
	}
	first := only(t, res).Steps[0]
	if first.Replayed {
		t.Error("a step that called the vendor is marked replayed")
	}

	// Second delivery: the vendor is back; lookup is not called again, its output is reused.
	f.lookup.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		return actions.Output{"state": "changed", "x": "other"}, nil
	})
	f.block.script(func(_ context.Context, _ int, in actions.Inputs) (actions.Output, error) {
		return actions.Output{"count": len(in.StringList("targets"))}, nil
	})
	a.Deliveries = 2
	res = f.process(t, a)
	out := only(t, res)
	if res.Retry || out.Status != engine.StatusSucceeded {
		t.Fatalf("second delivery: status %s, retry %v", out.Status, res.Retry)
	}
	if n := f.lookup.callCount(); n != 1 {
		t.Errorf("lookup called %d times over two deliveries, want 1", n)
	}
	if got := out.Steps[0]; got.Status != "succeeded" || got.Attempts != first.Attempts || !got.Replayed ||
		!reflect.DeepEqual(got.Output, map[string]any{"state": "open", "x": "e2", "key": "ev-1"}) {
		t.Errorf("recalled step = %+v, want the first delivery's result", got)
	}
	calls := f.block.inputs()
	if last := calls[len(calls)-1]; !reflect.DeepEqual(last["targets"], []string{"e1", "e2"}) {
		t.Errorf("block targets %v on the second delivery, want the recorded lookup's [e1 e2]", last["targets"])
	}
	if out.Deliveries != 2 {
		t.Errorf("deliveries %d, want 2", out.Deliveries)
	}

	// Another alert, or the same alert under another step id, is not a journal hit.
	b := phishing()
	b.ID = "alert-2"
	f.process(t, b)
	if n := f.lookup.callCount(); n != 2 {
		t.Errorf("lookup called %d times after a second alert, want 2", n)
	}
}

// A journal that cannot be read hands the alert back instead of running the step blind, which
// could repeat a vendor call that already succeeded; once it reads again, the step is reused.
func TestJournalUnreadableHandsTheAlertBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	a := phishing()
	only(t, f.process(t, a))
	if f.journal.len() != 3 {
		t.Fatalf("journal holds %d records, want 3", f.journal.len())
	}
	f.journal.fail(errors.New("kv: timeout"), nil)
	res := f.process(t, a)
	f.journal.fail(nil, nil)
	if !res.Requeue || !res.Retry || res.HeldBack {
		t.Errorf("result %+v with an unreadable journal, want a requeue", res)
	}
	if n := f.lookup.callCount(); n != 1 {
		t.Errorf("lookup called %d times, want 1: an unreadable journal must not repeat the call", n)
	}
	out := only(t, f.process(t, a))
	if out.Status != engine.StatusSucceeded || !out.Steps[0].Replayed || f.lookup.callCount() != 1 {
		t.Errorf("once readable: status %s, replayed %t, calls %d", out.Status, out.Steps[0].Replayed, f.lookup.callCount())
	}

	// A record that is not JSON, written by us, will read no better later: the step runs.
	g := newFixture(t, nil)
	only(t, g.process(t, a))
	g.journal.mu.Lock()
	for k := range g.journal.m {
		g.journal.m[k] = []byte("not json")
	}
	g.journal.mu.Unlock()
	if out := only(t, g.process(t, a)); out.Status != engine.StatusSucceeded || g.lookup.callCount() != 2 {
		t.Errorf("with corrupt records: status %s, lookup calls %d; want succeeded and 2", out.Status, g.lookup.callCount())
	}
}

// A journal that refuses writes for a few seconds (its bucket electing a leader after a crash
// takes 4 to 9 s) still gets the step's record: the next delivery reuses it instead of calling
// the vendor again.
func TestJournalWriteOutlastsAnElection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.journal.failPuts(4, errors.New("nats: timeout"))
	a := phishing()
	if out := only(t, f.process(t, a)); out.Status != engine.StatusSucceeded {
		t.Fatalf("status %s, want succeeded", out.Status)
	}
	if n := f.journal.len(); n != 3 {
		t.Fatalf("journal holds %d records, want 3: the first step's record was given up", n)
	}
	a.Deliveries = 2
	out := only(t, f.process(t, a))
	if n := f.lookup.callCount(); n != 1 || !out.Steps[0].Replayed {
		t.Errorf("lookup called %d times, replayed %t; want once, and its record reused", n, out.Steps[0].Replayed)
	}
}

// The journal write is bounded by its budget, so that a journal that never takes it cannot hold
// shutdown up; shutdown does not stop it being tried, since the vendor has acted.
func TestJournalWriteIsBoundedAndOutlivesShutdown(t *testing.T) {
	t.Parallel()
	const budget = 500 * time.Millisecond
	f := newFixture(t, func(o *engine.Options) { o.JournalWriteBudget = budget })
	f.journal.fail(nil, errors.New("nats: timeout"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.lookup.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		cancel() // shutdown arrives as the vendor answers
		return actions.Output{"state": "open", "x": "e2"}, nil
	})
	began := time.Now()
	res := f.eng.Process(ctx, phishing())
	if took := time.Since(began); took > budget+time.Second {
		t.Errorf("Process took %s with a journal that never takes the write; want about the %s budget", took.Round(time.Millisecond), budget)
	}
	if !res.Retry {
		t.Errorf("result %+v: a run cut short by shutdown must come back", res)
	}
	if n := f.block.callCount(); n != 0 {
		t.Errorf("the step after shutdown called its vendor %d times, want none", n)
	}
	if n := f.journal.putCount(); n < 3 {
		t.Errorf("%d journal writes tried after shutdown began, want them retried within the budget", n)
	}
}

func TestNoJournal(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	reg, err := actions.NewRegistry(f.lookup, f.block, f.notify, f.flaky)
	if err != nil {
		t.Fatal(err)
	}
	pbs, err := playbook.LoadDir("testdata/playbooks", reg)
	if err != nil {
		t.Fatal(err)
	}
	// A nil journal is allowed: every delivery runs every step. Zero Options take the wall clock.
	eng := engine.New(pbs, reg, actions.NewDispatcher(zap.NewNop()), nil, engine.Options{})
	for range 2 {
		out := only(t, eng.Process(context.Background(), phishing()))
		if out.Status != engine.StatusSucceeded || out.StartedAt.IsZero() {
			t.Errorf("outcome %+v, want succeeded with a time", out)
		}
	}
	if n := f.lookup.callCount(); n != 2 {
		t.Errorf("lookup called %d times over two deliveries without a journal, want 2", n)
	}
}

// Shutdown cuts a step short: the alert must come back rather than be published as failed,
// whatever the step's on_error says.
func TestShutdownDuringStepRetries(t *testing.T) {
	t.Parallel()
	for _, subject := range []string{"soar.alerts.stop.x", "soar.alerts.continue.x"} {
		t.Run(subject, func(t *testing.T) {
			t.Parallel()
			if strings.Contains(subject, "continue") {
			}
			f := newFixture(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f.flaky.script(func(ctx context.Context, _ int, _ actions.Inputs) (actions.Output, error) {
				cancel() // shutdown arrives while the vendor call is in flight
				<-ctx.Done()
				return nil, ctx.Err()
			})
			res := f.eng.Process(ctx, alertOn(subject, nil))
			if !res.Retry {
				t.Errorf("retry not set for a run cut short by shutdown: %+v", res.Outcomes)
			}
		})
	}
}

// One engine serves every alert in flight at once (run with -race).
func TestConcurrentProcess(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	const n = 16
	results := make(chan engine.Result, n)
	for i := range n {
		go func() {
			a := phishing()
			a.ID = fmt.Sprintf("alert-c%d", i)
			results <- f.eng.Process(context.Background(), a)
		}()
	}
	for range n {
		if out := only(t, <-results); out.Status != engine.StatusSucceeded {
			t.Errorf("%s: status %s", out.AlertID, out.Status)
		}
	}
	if got := f.lookup.callCount(); got != n {
		t.Errorf("lookup called %d times for %d alerts", got, n)
	}
	if got := f.journal.len(); got != 3*n {
		t.Errorf("journal holds %d records, want %d", got, 3*n)
	}
}

// Run-time expression errors read as one sentence that names the playbook or step once.
func TestRuntimeErrorMessagesNameThingsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	out := only(t, f.process(t, alertOn("soar.alerts.when.x", map[string]any{"count": "many"})))
	if n := strings.Count(out.Error, "when-broken"); n != 1 {
		t.Errorf("when error %q names the playbook %d times", out.Error, n)
	}
	out = only(t, f.process(t, alertOn("soar.alerts.render.x", map[string]any{"entityIds": []any{"e1"}, "count": "many"})))
	if e := out.Steps[1].Error; strings.Count(e, "if_broken") != 1 {
		t.Errorf("if error %q names the step %d times", e, strings.Count(e, "if_broken"))
	}
}

// obsRecorder is an engine.Observer that remembers what it hears, in order.
type obsRecorder struct {
	mu        sync.Mutex
	playbooks []string
	steps     []string
}

func (o *obsRecorder) PlaybookFinished(playbook, status string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.playbooks = append(o.playbooks, playbook+"="+status)
}

func (o *obsRecorder) StepFinished(_, action, status string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.steps = append(o.steps, action+"="+status)
}

func (o *obsRecorder) take() (playbooks, steps []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	playbooks, steps = o.playbooks, o.steps
	o.playbooks, o.steps = nil, nil
	return playbooks, steps
}

func TestObserverHearsEveryRunAndStep(t *testing.T) {
	t.Parallel()
	obs := &obsRecorder{}
	f := newFixture(t, func(o *engine.Options) { o.Observer = obs })
	f.block.script(func(context.Context, int, actions.Inputs) (actions.Output, error) { return nil, errVendorDown })

	check := func(what string, gotPB, gotSteps, wantPB, wantSteps []string) {
		t.Helper()
		if !slices.Equal(gotPB, wantPB) || !slices.Equal(gotSteps, wantSteps) {
			t.Errorf("%s: observer heard playbooks %v and steps %v\nwant playbooks %v and steps %v", what, gotPB, gotSteps, wantPB, wantSteps)
		}
	}
	f.process(t, phishing())
	pb, st := obs.take()
	check("failing delivery", pb, st, []string{"quarantine=failed"},
		[]string{"test.lookup=succeeded", "test.block=failed", "test.notify=skipped"})

	f.block.script(nil)
	a := phishing()
	a.Deliveries = 2
	f.process(t, a)
	pb, st = obs.take()
	check("redelivery", pb, st, []string{"quarantine=succeeded"},
		[]string{"test.lookup=reused", "test.block=succeeded", "test.notify=succeeded"})

	f.process(t, alertOn("soar.alerts.nowhere", nil))
	pb, st = obs.take()
	check("unmatched", pb, st, []string{"=unmatched"}, nil)

	f.process(t, alertOn("soar.alerts.when.x", map[string]any{"count": "many"}))
	pb, st = obs.take()
	check("when error", pb, st, []string{"when-broken=failed"}, nil)
}

// Vendor clients decode with UseNumber so that ids stay exact; the numbers must still compare
// as numbers in `if`, and render plainly, on the first run and on a journal replay alike.
func TestVendorNumbersCompareAsNumbers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.lookup.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		return actions.Output{"score": json.Number("7"), "ratio": json.Number("0.25"), "bigId": json.Number("12345678901234567890")}, nil
	})
	failNotes := true
	f.notify.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		if failNotes {
			return nil, errVendorDown
		}
		return actions.Output{"sent": true}, nil
	})
	a := alertOn("soar.alerts.numbers.x", map[string]any{"eventId": "ev-1"})
	for delivery, wantRetry := range []bool{true, false} { // the second run replays lookup from the journal
		a.Deliveries = delivery + 1
		res := f.process(t, a)
		out := only(t, res)
		if res.Retry != wantRetry || out.Steps[1].Status == engine.StatusSkipped {
			t.Fatalf("delivery %d: retry %v, steps %v; want the note to run", a.Deliveries, res.Retry, stepStatuses(out))
		}
		failNotes = false
	}
	if n := f.lookup.callCount(); n != 1 {
		t.Errorf("lookup called %d times, want 1", n)
	}
	in := f.notify.inputs()
	if got := in[len(in)-1]["text"]; got != "score 7, id 12345678901234567890" {
		t.Errorf("note text = %q", got)
	}
}

// A vendor's long Retry-After ends the step's retries and travels up, so the queue can wait
// that long before the redelivery.
func TestRetryAfterReachesTheResult(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.block.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		return nil, &actions.RetryAfterError{Err: errVendorDown, After: time.Hour}
	})
	res := f.process(t, phishing())
	if !res.Retry || res.RetryAfter != time.Hour {
		t.Errorf("Retry %v, RetryAfter %v; want true, 1h", res.Retry, res.RetryAfter)
	}
	if n := f.block.callCount(); n != 1 {
		t.Errorf("block called %d times; an hour's Retry-After is not waited out in place", n)
	}
}

// The journal is keyed by JournalID when the queue gives one: two alerts that share an id made
// from a reused stream sequence are two alerts, and both reach the vendor.
func TestJournalIDSeparatesAlertsWithTheSameID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	first, second := phishing(), phishing()
	first.ID, first.JournalID = "SOAR_ALERTS:1", "SOAR_ALERTS:1@100"
	second.ID, second.JournalID = "SOAR_ALERTS:1", "SOAR_ALERTS:1@200"
	f.process(t, first)
	f.process(t, second)
	if n := f.lookup.callCount(); n != 2 {
		t.Errorf("lookup called %d times for two alerts, want 2", n)
	}
	f.process(t, second) // a redelivery of the second
	if n := f.lookup.callCount(); n != 2 {
		t.Errorf("lookup called %d times after a redelivery, want still 2", n)
	}
}
