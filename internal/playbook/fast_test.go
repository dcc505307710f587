package playbook

import "testing"

// The forms conditions are mostly written in are evaluated by fastExpr; the rest by the VM alone.
func TestFastExprTakes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		src  string
		fast bool
	}{
		{`alert.type == "malware-1"`, true},
		{`alert.severity in ["critical", "high"] && alert.score > 5`, true},
		{`alert.source == "edr-2" || "quarantine-2" in alert.tags`, true},
		{`alert.sender endsWith "@evil-1.example" && alert.recipient != nil`, true},
		{`not (alert.a.b.c matches "^x") and vars.v <= 2.5 or subject startsWith "soar."`, true},
		{`alert_id contains "-" && alert.n >= 1`, true},
		{`len(alert.tags) > 1`, false},
		{`any(alert.endpoints, .os == "linux")`, false},
		{`steps.q.status == "succeeded"`, false},
		{`alert?.type == "x"`, false},
		{`alert.n + 1 > 2`, false},
		{`let t = alert.type; t == "x"`, false},
	} {
		p, err := compile(tt.src, scope{}, true)
		if err != nil {
			t.Fatalf("compile %q: %v", tt.src, err)
		}
		if got := p.fast != nil; got != tt.fast {
			t.Errorf("%q: fast path %v, want %v", tt.src, got, tt.fast)
		}
	}
}
