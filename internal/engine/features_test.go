package engine_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
)

func eachAlert(id string, targets ...string) engine.Alert {
	list := make([]any, len(targets))
	for i, t := range targets {
		list[i] = t
	}
	return engine.Alert{ID: id, Subject: "soar.alerts.each.x", Body: map[string]any{"targets": list, "why": "campaign"}, Deliveries: 1}
}

// foreach runs once per item with the item and the run's vars; the output is the list of the
// items' outputs; a failed item is reported by index and, under on_error: continue, the rest run.
func TestForeachRunsEachItem(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.block.script(func(_ context.Context, _ int, in actions.Inputs) (actions.Output, error) {
		if in.StringList("targets")[0] == "bad" {
			return nil, actions.Permanent(errors.New("HTTP 404: no such target"))
		}
		return actions.Output{"blocked": in.StringList("targets")[0], "reason": in.String("reason")}, nil
	})
	out := only(t, f.process(t, eachAlert("e-1", "a", "skip-me", "bad", "b")))
	st := out.Steps[0]
	if st.Status != engine.StatusFailed || st.Error != "item 2: HTTP 404: no such target" {
		t.Errorf("step %s %q, want failed naming item 2", st.Status, st.Error)
	}
	want := []any{
		map[string]any{"blocked": "a", "reason": "riposte: campaign"},
		nil, nil,
		map[string]any{"blocked": "b", "reason": "riposte: campaign"},
	}
	if !reflect.DeepEqual(st.Output, want) {
		t.Errorf("output %#v, want %#v", st.Output, want)
	}
	if n := f.block.callCount(); n != 3 {
		t.Errorf("block called %d times, want 3 (one item skipped by its if)", n)
	}

	// Redelivered: each item that succeeded is replayed from its own journal record.
	f.block.script(func(_ context.Context, _ int, in actions.Inputs) (actions.Output, error) {
		return actions.Output{"blocked": in.StringList("targets")[0], "reason": in.String("reason")}, nil
	})
	out = only(t, f.process(t, eachAlert("e-1", "a", "skip-me", "bad", "b")))
	if out.Steps[0].Status != engine.StatusSucceeded || f.block.callCount() != 4 {
		t.Errorf("second delivery: %s with %d calls, want succeeded calling only the failed item again", out.Steps[0].Status, f.block.callCount())
	}
}

func TestForeachOfNothingIsSkipped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	if st := only(t, f.process(t, eachAlert("e-2"))).Steps[0]; st.Status != engine.StatusSkipped {
		t.Errorf("no items: %s", st.Status)
	}
	bad := eachAlert("e-3")
	bad.Body["targets"] = "not a list"
	st := only(t, f.process(t, bad)).Steps[0]
	if st.Status != engine.StatusFailed || !strings.Contains(st.Error, "foreach") {
		t.Errorf("not a list: %s %q, want failed naming the foreach", st.Status, st.Error)
	}
}

// A shadow playbook calls no vendor, journals nothing, and records what each step would have
// sent; its outcome says shadowed.
func TestShadowPlaybookCallsNoVendor(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	a := phishing()
	a.Subject = "soar.alerts.trial.phishing"
	out := only(t, f.process(t, a))
	if out.Playbook != "shadow" || out.Status != engine.StatusShadowed {
		t.Fatalf("outcome %s %s", out.Playbook, out.Status)
	}
	if f.block.callCount() != 0 || f.notify.callCount() != 0 || f.journal.len() != 0 {
		t.Errorf("calls block %d notify %d, journal %d: a shadow run touched something", f.block.callCount(), f.notify.callCount(), f.journal.len())
	}
	want := map[string]any{"targets": []any{"e1"}, "reason": "shadow for alert-1"}
	if out.Steps[0].Status != engine.StatusShadowed || !reflect.DeepEqual(out.Steps[0].Output, want) {
		t.Errorf("step %s %#v, want shadowed with %#v", out.Steps[0].Status, out.Steps[0].Output, want)
	}
	if out.Steps[1].Status != engine.StatusSkipped {
		t.Errorf("a false if: %s", out.Steps[1].Status)
	}
}
