package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/riposte-soar/riposte/internal/engine"
)

// BenchmarkProcess is the engine's own cost for one alert through the three-step quarantine
// playbook (every other testdata playbook is checked and skipped): conditions, rendering,
// dispatch to in-memory actions, journal reads and writes, the outcome. Vendors excluded.
func BenchmarkProcess(b *testing.B) {
	for _, name := range []string{"matched", "unmatched"} {
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, nil)
			subject := "soar.alerts.hec.phishing"
			if name == "unmatched" {
				subject = "soar.alerts.nothing.here"
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				a := engine.Alert{
					ID: fmt.Sprintf("bench-%d", i), Subject: subject, Deliveries: 1,
					Body: map[string]any{"type": "phishing", "eventId": "ev-1", "entityId": "e1"},
				}
				if res := f.eng.Process(ctx, a); res.Retry || len(res.Outcomes) != 1 {
					b.Fatalf("unexpected result %+v", res)
				}
			}
		})
	}
}
