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
		res := e.Process(ctx, alertOf(a))
		// A run held back by a vendor's breaker made no vendor call: it waits for the vendor
		// without using up the alert's budget of vendor failures.
		v := queue.Verdict{Retry: res.Retry && !res.HeldBack && !res.Requeue, Requeue: res.HeldBack || res.Requeue,
			HeldBack: res.HeldBack, RetryAfter: res.RetryAfter}
		v.Outcomes = encodeOutcomes(res.Outcomes, maxOutcome, a.ID, log)
		return v
	}
}

// Triage is the queue's side of Engine.triage: the verdict on an alert that no playbook runs,
// given on the pull's goroutine without taking a slot. maxOutcome is as for Handler.
func (e *Engine) Triage(maxOutcome int, log *zap.Logger) queue.Triage {
	return func(a *queue.Alert) (queue.Verdict, bool) {
		out, ok := e.triage(alertOf(a))
		if !ok {
			return queue.Verdict{}, false
		}
		return queue.Verdict{Outcomes: []queue.Outcome{encodeOutcomeFor(out, maxOutcome, a.ID, log)}}, true
	}
}

func alertOf(a *queue.Alert) Alert {
	return Alert{
		ID: a.ID, Subject: a.Subject, Headers: a.Headers, Body: a.Body, Deliveries: a.Deliveries, Failures: a.Failures, JournalID: a.JournalID, ReplayOf: a.ReplayOf,
		ResumePlaybook: a.ResumePlaybook,
	}
}

func encodeOutcomes(outs []Outcome, maxOutcome int, alertID string, log *zap.Logger) []queue.Outcome {
	encoded := make([]queue.Outcome, 0, len(outs))
	for _, o := range outs {
		encoded = append(encoded, encodeOutcomeFor(o, maxOutcome, alertID, log))
	}
	return encoded
}

// encodeOutcomeFor encodes o for the queue, without the step outputs if they would make it
// bigger than maxOutcome.
func encodeOutcomeFor(o Outcome, maxOutcome int, alertID string, log *zap.Logger) queue.Outcome {
	b, err := encodeOutcome(o)
	if err != nil || len(b) > maxOutcome {
		// Keep the outcome, drop the step outputs that made it unpublishable.
		log.Error("outcome cannot be published whole; step outputs left out",
			zap.String("alert_id", alertID), zap.String("playbook", o.Playbook), zap.Int("bytes", len(b)), zap.Error(err))
		for i := range o.Steps {
			if o.Steps[i].Output != nil {
				o.Steps[i].Output = map[string]any{"truncated": true}
			}
		}
		b, _ = encodeOutcome(o)
	}
	return queue.Outcome{Playbook: o.Playbook, JSON: b}
}
