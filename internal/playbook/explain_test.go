package playbook

import (
	"fmt"
	"testing"
)

func TestExplainWhen(t *testing.T) {
	t.Parallel()
	pb := loadInline(t, `name: explain
on: [soar.alerts.>]
vars: {floor: 2}
when: alert.type == "phishing" && alert.severity > vars.floor && (alert.sender endsWith "@evil.example" || "vip" in alert.tags)
steps:
  - id: first
    action: checkpoint.get_event
    with: {eventId: "e"}
  - id: s
    if: steps.first.output.state != "done" and item > 1
    foreach: ${{ [1, 2] }}
    action: checkpoint.get_event
    with: {eventId: "e"}
`)
	tests := []struct {
		name  string
		alert map[string]any
		want  string
	}{
		{"holds", map[string]any{"type": "phishing", "severity": 3, "sender": "a@evil.example"}, "[]"},
		{"one part false", map[string]any{"type": "phishing", "severity": 1, "sender": "a@evil.example"},
			`[alert.severity > vars.floor: alert.severity=1 vars.floor=2]`},
		{"two parts false, nil field",
			map[string]any{"type": "dlp", "severity": 3, "sender": "a@good.example", "tags": []any{}},
			`[alert.type == "phishing": alert.type=dlp; alert.sender endsWith "@evil.example" || "vip" in alert.tags: alert.sender=a@good.example alert.tags=[]]`},
		{"cannot evaluate", map[string]any{"type": "phishing", "severity": "high", "sender": "x@evil.example"},
			`[alert.severity > vars.floor: alert.severity=high vars.floor=2 (error)]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := &Env{Alert: tt.alert, Steps: map[string]StepState{}}
			if got := whyText(pb.ExplainWhen(env)); got != tt.want {
				t.Errorf("ExplainWhen = %s\nwant %s", got, tt.want)
			}
		})
	}
	st := pb.Steps[1]
	env := &Env{Alert: map[string]any{}, Steps: map[string]StepState{}}
	if got, want := whyText(st.ExplainIf(env, 1.0)), `[item > 1: item=1]`; got != want {
		t.Errorf("ExplainIf(item 1) = %s, want %s", got, want)
	}
	if got := whyText(st.ExplainIf(env, 2.0)); got != "[]" {
		t.Errorf("ExplainIf(item 2) = %s, want nothing false", got)
	}
}

func whyText(ws []Why) string {
	s := "["
	for i, w := range ws {
		if i > 0 {
			s += "; "
		}
		s += w.Part + ":"
		for _, seen := range w.Saw {
			s += fmt.Sprintf(" %s=%v", seen.Expr, seen.Value)
		}
		if w.Err != "" {
			s += " (error)"
		}
	}
	return s + "]"
}
