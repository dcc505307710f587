package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/riposte-soar/riposte/internal/queue"
)

func TestPlan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, subject, alert string
		code                 int
		want, absent         []string
	}{
		{
			name: "matching alert", subject: "soar.alerts.checkpoint.phishing",
			alert: phishing("p-1", "ev-9", "ent-9"), code: 0,
			want: []string{"alert p-1 on soar.alerts.checkpoint.phishing", "phishing-quarantine: runs",
				"1. event  checkpoint.get_event  runs", `inputs: {"eventId":"ev-9"}`,
				"2. quarantine  checkpoint.quarantine_entity  runs", `"entityIds":["ent-9"]`},
			absent: []string{"unmatched"},
		},
		{
			name: "condition false", subject: "soar.alerts.checkpoint.dlp",
			alert: `{"type":"dlp"}`, code: 0,
			want: []string{"phishing-quarantine: not run (when is false)", "soar.outcomes.unmatched"},
		},
		{
			name: "subject outside every filter", subject: "soar.alerts.siem.login",
			alert: `{"user":"bob"}`, code: 0,
			want: []string{"not run (subject is outside soar.alerts.checkpoint.>)", "alert plan:1 on"},
		},
		{
			name: "not an object", subject: "soar.alerts.checkpoint.phishing",
			alert: `[1,2]`, code: 1, want: []string{"must be a JSON object"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			args := []string{"plan", "--playbooks", shippedPlaybooks, "--subject", tt.subject, "-"}
			code := dispatch(context.Background(), args, noEnv, strings.NewReader(tt.alert), &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errOut.String())
			}
			all := out.String() + errOut.String()
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("plan output lacks %q:\n%s", w, all)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(all, a) {
					t.Errorf("plan output has %q:\n%s", a, all)
				}
			}
		})
	}
}

func TestReadableMessage(t *testing.T) {
	t.Parallel()
	m := nats.NewMsg("soar.outcomes.phishing-quarantine")
	m.Data = []byte(`{"alert_id":"a-1","playbook":"phishing-quarantine","status":"failed","steps":[{"id":"event","status":"succeeded","attempts":1,"replayed":true},{"id":"quarantine","status":"failed","attempts":3,"error":"HTTP 503: busy"}]}`)
	got := readableMessage(m, "soar.dlq")
	want := "FAILED   phishing-quarantine          alert=a-1 steps: event:succeeded/1 (replayed) quarantine:failed/3 error: quarantine: HTTP 503: busy"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	d := nats.NewMsg("soar.dlq.invalid")
	d.Header.Set(queue.HeaderSubject, "soar.alerts.x")
	d.Header.Set(queue.HeaderAlertID, "SOAR_ALERTS:7")
	d.Header.Set(queue.HeaderDLQReason, "invalid")
	d.Header.Set(queue.HeaderDLQDetail, "alert is not valid JSON")
	if got := readableMessage(d, "soar.dlq"); !strings.Contains(got, "DEAD") || !strings.Contains(got, "reason=invalid: alert is not valid JSON") {
		t.Errorf("dead letter: %q", got)
	}
}
