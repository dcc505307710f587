package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// Every playbook's vars and `when` for one alert are evaluated in one environment: each still
// sees its own vars (none for a playbook without), and a run sees the vars and the instant its
// `when` saw, with steps of its own.
func TestPlaybooksOfOneAlertSeeTheirOwnVars(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"a": "vars: {v: a}\nwhen: vars.v == alert.want\n",
		"b": "vars: {v: \"${{ alert.want }}\"}\nwhen: vars.v == \"b\" && len(steps) == 0\n",
		"c": "when: len(vars) == 0\n",
		"d": "vars: {v: d, w: \"${{ vars.v + alert.want }}\"}\nwhen: vars.w == \"db\"\n",
	} {
		pb := "name: " + name + "\non: [soar.alerts.>]\n" + body +
			"steps:\n  - {id: l, action: test.lookup, with: {key: \"${{ vars }} ${{ now() }}\"}}\n" +
			"  - {id: m, action: test.lookup, with: {key: \"${{ steps.l.status }}\"}}\n"
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(pb), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := &callLog{}
	lookup := &fakeAction{spec: actions.Spec{Name: "test.lookup", Vendor: "test",
		Inputs: []actions.Input{{Name: "key", Type: actions.String, Required: true}}}, log: log}
	reg, err := actions.NewRegistry(lookup)
	if err != nil {
		t.Fatal(err)
	}
	pbs, err := playbook.LoadDir(dir, reg)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { at = at.Add(time.Second); return at }
	eng := engine.New(pbs, reg, actions.NewDispatcher(zap.NewNop()), newMemJournal(), engine.Options{Worker: "t", Log: zap.NewNop(), Now: clock})
	res := eng.Process(context.Background(), engine.Alert{ID: "a-1", Subject: "soar.alerts.x", Deliveries: 1, Body: map[string]any{"want": "b"}})

	var ran []string
	for _, o := range res.Outcomes {
		if o.Status != engine.StatusSucceeded {
			t.Errorf("%s: %s %q", o.Playbook, o.Status, o.Error)
		}
		ran = append(ran, o.Playbook)
	}
	if len(ran) != 3 || ran[0] != "b" || ran[1] != "c" || ran[2] != "d" {
		t.Fatalf("ran %v, want [b c d]", ran)
	}
	calls := log.all()
	if len(calls) != 6 {
		t.Fatalf("%d calls, want 6", len(calls))
	}
	wantVars := []string{`{"v":"b"}`, `{}`, `{"v":"d","w":"db"}`}
	for i, o := range res.Outcomes {
		vars, when, _ := strings.Cut(calls[2*i].in.String("key"), " ")
		if vars != wantVars[i] {
			t.Errorf("%s: vars %s, want %s", o.Playbook, vars, wantVars[i])
		}
		if got := calls[2*i+1].in.String("key"); got != "succeeded" {
			t.Errorf("%s: steps.l.status %q, want its own step's", o.Playbook, got)
		}
		// now() in a run is the instant its `when` was evaluated at: before the run started,
		// and after the run before it finished.
		now, err := time.Parse(time.RFC3339, when)
		if err != nil {
			t.Fatal(err)
		}
		if !now.Before(o.StartedAt) || i > 0 && !now.After(res.Outcomes[i-1].FinishedAt) {
			t.Errorf("%s: now() %s; started %s, the run before finished %s", o.Playbook, now, o.StartedAt, res.Outcomes[max(i-1, 0)].FinishedAt)
		}
	}
}
