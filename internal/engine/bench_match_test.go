package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/playbook"
	"github.com/riposte-soar/riposte/internal/queue"
)

// BenchmarkMatch100Playbooks is one alert against 100 playbooks on its subject, none of whose
// conditions hold: the cost of a large playbook set for alerts nobody acts on.
func BenchmarkMatch100Playbooks(b *testing.B) {
	eng, body := match100(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res := eng.Process(ctx, engine.Alert{ID: "a-1", Subject: "soar.alerts.bench.mail", Deliveries: 1, Body: body})
		if len(res.Outcomes) != 1 || res.Outcomes[0].Status != engine.StatusUnmatched {
			b.Fatalf("unexpected result %+v", res)
		}
	}
}

// BenchmarkTriage100Playbooks is the same alert as the queue's Triage answers it, on the pull's
// goroutine: the conditions, and the unmatched outcome encoded.
func BenchmarkTriage100Playbooks(b *testing.B) {
	eng, body := match100(b)
	triage := eng.Triage(1<<20, zap.NewNop())
	b.ReportAllocs()
	for b.Loop() {
		v, ok := triage(&queue.Alert{ID: "a-1", Subject: "soar.alerts.bench.mail", Deliveries: 1, JournalID: "a-1", Body: body})
		if !ok || len(v.Outcomes) != 1 || v.Outcomes[0].Playbook != "" {
			b.Fatalf("unexpected verdict %v %+v", ok, v)
		}
	}
}

// match100 is an engine of 100 playbooks on one subject, none of which holds for body.
func match100(b *testing.B) (*engine.Engine, map[string]any) {
	dir := b.TempDir()
	whens := []string{`alert.type == "malware-%d"`, `alert.severity in ["critical", "high"] && alert.score > %d`,
		`alert.source == "edr-%d" || "quarantine-%[1]d" in alert.tags`,
		`alert.confidenceIndicator == "malicious" && alert.eventId == "ev-never-%d"`,
		`alert.sender endsWith "@evil-%d.example" && alert.recipient != nil`}
	for i := range 100 {
		pb := fmt.Sprintf("name: p%03d\non: [soar.alerts.>]\nwhen: '%s'\nsteps:\n  - {id: l, action: test.lookup, with: {key: \"${{ alert.eventId }}\"}}\n",
			i, fmt.Sprintf(whens[i%len(whens)], i))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("p%03d.yaml", i)), []byte(pb), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	lookup := &fakeAction{spec: actions.Spec{Name: "test.lookup", Vendor: "test",
		Inputs: []actions.Input{{Name: "key", Type: actions.String, Required: true}}}, log: &callLog{}}
	reg, err := actions.NewRegistry(lookup)
	if err != nil {
		b.Fatal(err)
	}
	pbs, err := playbook.LoadDir(dir, reg)
	if err != nil {
		b.Fatal(err)
	}
	eng := engine.New(pbs, reg, actions.NewDispatcher(zap.NewNop()), newMemJournal(), engine.Options{Worker: "bench", Log: zap.NewNop()})
	body := map[string]any{"type": "phishing", "confidenceIndicator": "suspicious", "severity": "low", "score": 12.0,
		"source": "hec", "eventId": "ev-1", "entityId": "e-1", "sender": "someone@example.com",
		"recipient": "victim@example.org", "tags": []any{"mail", "inbound"}}
	return eng, body
}

// BenchmarkEncodeOutcome is the handler's encoding of a two-step outcome.
func BenchmarkEncodeOutcome(b *testing.B) {
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	o := engine.Outcome{AlertID: "alert-123456", Subject: "soar.alerts.checkpoint.phishing", Playbook: "phishing-quarantine",
		Status: engine.StatusSucceeded, StartedAt: at, FinishedAt: at.Add(120 * time.Millisecond), Worker: "host-1-4242", Deliveries: 1,
		Steps: []engine.StepOutcome{
			{ID: "event", Action: "checkpoint.get_event", Status: engine.StatusSucceeded, Attempts: 1, DurationMS: 51,
				Output: map[string]any{"eventId": "ev-1", "state": "new", "severity": "high", "entityId": "e-1",
					"availableEventActions": []any{"quarantine", "dismiss"}, "actions": []any{}}},
			{ID: "quarantine", Action: "checkpoint.quarantine_entity", Status: engine.StatusSucceeded, Attempts: 1, DurationMS: 52,
				Output: map[string]any{"tasks": []any{map[string]any{"entityId": "e-1", "taskId": "123445311234"}}}},
		}}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out, err := json.Marshal(o)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.ReportMetric(float64(n), "bytes/outcome")
}
