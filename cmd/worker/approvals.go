package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/queue"
)

// gates adapts the queue's approval bucket to the engine's gates.
type gates struct {
	ap  *queue.Approvals
	now func() time.Time
}

func (g gates) Gate(ctx context.Context, eg engine.Gate) (*engine.ApprovalInfo, error) {
	body, err := json.Marshal(eg.Body)
	if err != nil {
		return nil, fmt.Errorf("keep the alert for its approval: %w", err)
	}
	now := g.now().UTC().Truncate(time.Millisecond)
	rec, err := g.ap.Gate(ctx, queue.ApprovalRecord{
		ApprovalRequest: queue.ApprovalRequest{
			ID: eg.ID, AlertID: eg.AlertID, Playbook: eg.Playbook, Step: eg.Step, Prompt: eg.Prompt,
			Inputs: eg.Inputs, Approvers: eg.Approvers, OnTimeout: eg.OnTimeout,
			CreatedAt: now, ExpiresAt: now.Add(eg.Timeout),
		},
		Subject: eg.Subject, Headers: eg.Headers, Body: body, JournalID: eg.JournalID,
	})
	if err != nil {
		return nil, err
	}
	if rec.Decision == "" {
		return nil, nil
	}
	return &engine.ApprovalInfo{Decision: rec.Decision, By: rec.DecidedBy, DecidedAt: rec.DecidedAt, Reason: rec.Reason}, nil
}

const approvalsUsage = `usage: worker approvals list [--json]

  list   the approval gates waiting for a decision: age, id, playbook, step, prompt, expiry
         (--json: one JSON object per line, the request as published)

Decide one with "worker approve ID --by NAME [--reason TEXT]" or "worker deny ID --by NAME
--reason TEXT" (docs/approvals.md).
`

// cmdApprovals lists the waiting approval gates.
func cmdApprovals(ctx context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, approvalsUsage)
		if len(args) == 0 {
			return errFlagsShown
		}
		return errHelpShown
	}
	if args[0] != "list" && args[0] != "ls" {
		fmt.Fprintf(stderr, "worker approvals: unknown command %q\n\n%s", args[0], approvalsUsage)
		return errFlagsShown
	}
	var (
		tf     toolFlags
		asJSON bool
	)
	f := newEnvFlags("approvals list", env)
	tf.define(f, false, false, false)
	tf.defineApprovals(f)
	f.Bool(&asJSON, "json", "", false, "one JSON object per line instead of the table")
	if err := parseFlags(f, args[1:], stderr); err != nil {
		return err
	}
	nc, js, err := tf.connect(env, "riposte-approvals")
	if err != nil {
		return err
	}
	defer nc.Close()
	ap, err := queue.OpenApprovals(ctx, js, tf.cfg)
	if err != nil {
		return err
	}
	waiting, err := ap.Waiting(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, rec := range waiting {
			if err := enc.Encode(waitingJSON{ApprovalRequest: rec.ApprovalRequest, Approved: voters(rec)}); err != nil {
				return err
			}
		}
		return nil
	}
	if len(waiting) > 0 {
		fmt.Fprintln(stdout, row([]int{8, 24, 24, 12, 8, 20}, "AGE", "APPROVAL ID", "PLAYBOOK", "STEP", "VOTES", "EXPIRES", "PROMPT"))
	}
	for _, rec := range waiting {
		fmt.Fprintln(stdout, row([]int{8, 24, 24, 12, 8, 20},
			now.Sub(rec.CreatedAt).Round(time.Second).String(), rec.ID, rec.Playbook, rec.Step,
			fmt.Sprintf("%d/%d", len(rec.Votes), rec.Approvers), rec.ExpiresAt.UTC().Format(time.RFC3339), oneLine(rec.Prompt, 120)))
	}
	fmt.Fprintf(stderr, "%d approval(s) waiting\n", len(waiting))
	return nil
}

// waitingJSON is a waiting gate as `worker approvals list --json` prints it.
type waitingJSON struct {
	queue.ApprovalRequest
	Approved []string `json:"approved_by"`
}

func voters(rec queue.ApprovalRecord) []string {
	by := make([]string, 0, len(rec.Votes))
	for _, v := range rec.Votes {
		by = append(by, v.By)
	}
	return by
}

// cmdApprove and cmdDeny decide one gate.
func cmdApprove(ctx context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	return decide(ctx, queue.DecisionApprove, args, env, stdout, stderr)
}

func cmdDeny(ctx context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	return decide(ctx, queue.DecisionDeny, args, env, stdout, stderr)
}

// decide sends one decision and waits for a worker to apply it, so the operator learns whether
// the run resumed, or how many approvals it still needs.
func decide(ctx context.Context, decision string, args []string, env environ, stdout, stderr io.Writer) error {
	var (
		tf         toolFlags
		by, reason string
		wait       time.Duration
	)
	f := newEnvFlags(decision, env)
	tf.define(f, false, false, false)
	tf.defineApprovals(f)
	f.String(&by, "by", "RIPOSTE_APPROVER", "", "who decides (required): a name the outcome and the log will show")
	f.String(&reason, "reason", "", "", "why (required to deny)")
	f.Duration(&wait, "wait", "", 15*time.Second, "how long to wait for a worker to apply the decision (0: do not wait)")
	pos, err := parseWithArgs(f, args, stderr)
	if err != nil {
		return err
	}
	var problems []string
	if len(pos) != 1 {
		problems = append(problems, fmt.Sprintf("give exactly one approval id (from `worker approvals list`), got %d", len(pos)))
	}
	if strings.TrimSpace(by) == "" {
		problems = append(problems, "--by (or RIPOSTE_APPROVER) must name who decides")
	}
	if decision == queue.DecisionDeny && strings.TrimSpace(reason) == "" {
		problems = append(problems, "--reason must say why the step is denied")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	nc, js, err := tf.connect(env, "riposte-"+decision)
	if err != nil {
		return err
	}
	defer nc.Close()
	ap, err := queue.OpenApprovals(ctx, js, tf.cfg)
	if err != nil {
		return err
	}
	d := queue.Decision{ApprovalID: pos[0], Decision: decision, By: by, Reason: reason}
	before, err := ap.Send(ctx, d)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, sentLine(decision, before))
	if wait <= 0 {
		return nil
	}
	applied, err := awaitApplied(ctx, ap, before, wait)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, applied)
	return nil
}

// sentLine says what was sent, for `worker approve` and the console.
func sentLine(decision string, before queue.ApprovalRecord) string {
	return fmt.Sprintf("%s sent for %s (%s, step %s of alert %s)", decision, before.ID, before.Playbook, before.Step, before.AlertID)
}

// awaitApplied waits up to wait for a worker to apply a decision sent on the gate before, and
// says what it did: decided, or counted one approval of several.
func awaitApplied(ctx context.Context, ap *queue.Approvals, before queue.ApprovalRecord, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		rec, err := ap.Get(ctx, before.ID)
		if err != nil {
			return "", err
		}
		switch {
		case rec.Decision != "":
			return fmt.Sprintf("decided: %s by %s at %s; the run resumes", rec.Decision, strings.Join(rec.DecidedBy, ", "), rec.DecidedAt.Format(time.RFC3339)), nil
		case len(rec.Votes) > len(before.Votes):
			return fmt.Sprintf("counted: %d of %d approvals (%s); it waits for more", len(rec.Votes), rec.Approvers, strings.Join(voters(rec), ", ")), nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("no worker applied the decision within %s; it stays on the decisions stream for the next worker that runs", wait)
}
