package engine_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/queue"
)

// Triage answers exactly the alerts no playbook runs, with the verdict the handler would give
// them, byte for byte, and without calling any action; every other alert is left to the handler.
func TestTriageAnswersOnlyWhatNoPlaybookRuns(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		alert   engine.Alert
		answers bool
	}{
		{"no playbook on the subject", alertOn("soar.alerts.other.kind", map[string]any{"type": "phishing"}), true},
		{"every when is false", alertOn("soar.alerts.hec.phishing", map[string]any{"type": "malware"}), true},
		{"a playbook's when holds", phishing(), false},
		{"a when fails", alertOn("soar.alerts.when.x", map[string]any{"count": "many"}), false},
		{"resumed after an approval", func() engine.Alert {
			a := alertOn("soar.alerts.hec.phishing", map[string]any{"type": "malware"})
			a.ResumePlaybook = "quarantine"
			return a
		}(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obs := &obsRecorder{}
			f := newFixture(t, func(o *engine.Options) { o.Observer = obs })
			a := &queue.Alert{ID: tt.alert.ID, Subject: tt.alert.Subject, Headers: tt.alert.Headers, Body: tt.alert.Body,
				Deliveries: 1, JournalID: tt.alert.ID, ResumePlaybook: tt.alert.ResumePlaybook}
			v, ok := f.eng.Triage(64<<10, zap.NewNop())(a)
			if ok != tt.answers {
				t.Fatalf("Triage answered %v, want %v", ok, tt.answers)
			}
			if n := len(f.log.all()); n != 0 {
				t.Errorf("Triage called %d actions", n)
			}
			triaged, _ := obs.take()
			if !ok {
				if len(v.Outcomes) != 0 || len(triaged) != 0 {
					t.Errorf("declined, yet gave outcomes %v and reported %v", v.Outcomes, triaged)
				}
				return
			}
			handled := f.eng.Handler(64<<10, zap.NewNop())(context.Background(), a)
			if v.Retry || v.Requeue || len(v.Outcomes) != 1 || len(handled.Outcomes) != 1 {
				t.Fatalf("Triage's verdict %+v, the handler's %+v; want one outcome each, nothing to retry", v, handled)
			}
			if got, want := v.Outcomes[0], handled.Outcomes[0]; got.Playbook != want.Playbook || !bytes.Equal(got.JSON, want.JSON) {
				t.Errorf("Triage's outcome %q %s\nthe handler's   %q %s", got.Playbook, got.JSON, want.Playbook, want.JSON)
			}
			if want := []string{"=unmatched"}; !slices.Equal(triaged, want) {
				t.Errorf("Triage reported runs %v, want %v", triaged, want)
			}
		})
	}
}
