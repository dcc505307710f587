package playbook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func loadOne(t *testing.T, body string) ([]*Playbook, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadDir(dir, testCatalogue(t))
}

func TestApprovalGate(t *testing.T) {
	t.Parallel()
	pbs, err := loadOne(t, `name: gated
on: [soar.alerts.>]
steps:
  - id: q
    action: checkpoint.quarantine_entity
    with: {entityIds: "${{ [alert.entityId] }}"}
    approval:
      prompt: "Quarantine ${{ alert.entityId }} for ${{ alert_id }}?"
      timeout: 30m
      on_timeout: approve
      approvers: 2
  - id: plain
    action: checkpoint.quarantine_entity
    with: {entityIds: x}
    approval: {prompt: "ok?"}
`)
	if err != nil {
		t.Fatal(err)
	}
	a := pbs[0].Steps[0].Approval
	if a == nil || a.Timeout != 30*time.Minute || a.OnTimeout != Approve || a.Approvers != 2 {
		t.Fatalf("approval %+v", a)
	}
	got, err := pbs[0].Steps[0].RenderPrompt(&Env{Alert: map[string]any{"entityId": "ent-1"}, AlertID: "a-1"}, nil)
	if err != nil || got != "Quarantine ent-1 for a-1?" {
		t.Errorf("prompt %q, %v", got, err)
	}
	if d := pbs[0].Steps[1].Approval; d == nil || d.Timeout != 4*time.Hour || d.OnTimeout != Deny || d.Approvers != 1 {
		t.Errorf("defaults %+v, want 4h, deny, 1", d)
	}
}

func TestApprovalProblems(t *testing.T) {
	t.Parallel()
	_, err := loadOne(t, `name: decisions
on: [soar.alerts.>]
steps:
  - id: q
    action: checkpoint.quarantine_entity
    with: {entityIds: x}
    approval:
      promt: "typo"
      timeout: soon
      on_timeout: maybe
      approvers: 0
  - id: r
    action: checkpoint.quarantine_entity
    with: {entityIds: x}
    approval: {prompt: "ok?", timeout: 1000h}
`)
	if err == nil {
		t.Fatal("no problems")
	}
	for _, want := range []string{
		`p.yaml:1: name "decisions" is reserved`,
		`p.yaml:8: step "q": approval: unknown key "promt"; did you mean "prompt"?`,
		`p.yaml:8: step "q": approval: missing required key "prompt"`,
		`p.yaml:9: step "q": approval.timeout: invalid duration "soon"`,
		`p.yaml:10: step "q": approval.on_timeout must be`,
		`p.yaml:11: step "q": approval.approvers must be a whole number of at least 1, got "0"`,
		`p.yaml:15: step "r": approval.timeout 1000h0m0s is longer than the 720h0m0s an approval is kept`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
}
