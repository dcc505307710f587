package engine

import (
	"context"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
)

// Handler adapts the engine to the queue: the queue knows deliveries, the engine knows
// playbooks. maxOutcome is the largest outcome the server takes (its max payload less room for
// headers): a bigger one could never be stored, so the alert would never be acked.
func (e *Engine) Handler(maxOutcome int, log *zap.Logger) queue.Handler {
	return func(ctx context.Context, a *queue.Alert) queue.Verdict {
		res := e.Process(ctx, Alert{
			ID: a.ID, Subject: a.Subject, Headers: a.Headers, Body: a.Body, Deliveries: a.Deliveries, Failures: a.Failures, JournalID: a.JournalID, ReplayOf: a.ReplayOf,
			ResumePlaybook: a.ResumePlaybook,
		})
		// A run held back by a vendor's breaker made no vendor call: it waits for the vendor
		// without using up the alert's budget of vendor failures.
		v := queue.Verdict{Retry: res.Retry && !res.HeldBack && !res.Requeue, Requeue: res.HeldBack || res.Requeue,
			HeldBack: res.HeldBack, RetryAfter: res.RetryAfter,
			Outcomes: make([]queue.Outcome, 0, len(res.Outcomes))}
		for _, o := range res.Outcomes {
			b, err := encodeOutcome(o)
			if err != nil || len(b) > maxOutcome {
				// Keep the outcome, drop the step outputs that made it unpublishable.
				log.Error("outcome cannot be published whole; step outputs left out",
					zap.String("alert_id", a.ID), zap.String("playbook", o.Playbook), zap.Int("bytes", len(b)), zap.Error(err))
				for i := range o.Steps {
					if o.Steps[i].Output != nil {
						o.Steps[i].Output = map[string]any{"truncated": true}
					}
				}
				b, _ = encodeOutcome(o)
			}
			v.Outcomes = append(v.Outcomes, queue.Outcome{Playbook: o.Playbook, JSON: b})
		}
		return v
	}
}
