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

// A condition whose first test compares one member of the alert with strings has a guard, which
// answers for the alerts that test rules out; any other has none.
func TestFieldGuard(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		src   string
		field string // "" for no guard
		alert map[string]any
		may   bool
	}{
		{`alert.type == "phishing"`, "type", map[string]any{"type": "malware"}, false},
		{`alert.type == "phishing" && alert.n > 1`, "type", map[string]any{"type": "phishing"}, true},
		{`"phishing" == alert["type"] and alert.a.b`, "type", map[string]any{}, false},
		{`alert.type == "phishing" && alert.n > 1 && alert.x`, "type", map[string]any{"type": int64(2)}, false},
		{`alert.severity in ["high", "critical"] && alert.score > 5`, "severity", map[string]any{"severity": "low"}, false},
		{`alert.severity in ["high", "critical"]`, "severity", map[string]any{"severity": "critical"}, true},
		{`alert.severity in ["high", ""]`, "severity", map[string]any{}, true},                         // nil is looked up as ""
		{`alert.severity in ["high"] && true`, "severity", map[string]any{"severity": int64(3)}, true}, // the VM's error
		{`alert.n > 1 && alert.type == "phishing"`, "", nil, false},                                    // the first test may fail
		{`alert.type == "phishing" || alert.n > 1`, "", nil, false},
		{`not (alert.type == "phishing")`, "", nil, false},
		{`alert.type == alert.kind`, "", nil, false},
		{`vars.type == "phishing"`, "", nil, false},
	} {
		p, err := compile(tt.src, scope{}, true)
		if err != nil {
			t.Fatalf("compile %q: %v", tt.src, err)
		}
		g := p.guard
		if tt.field == "" {
			if g != nil {
				t.Errorf("%q: guard on %q, want none", tt.src, g.field)
			}
			continue
		}
		if g == nil || g.field != tt.field {
			t.Errorf("%q: guard %+v, want one on %q", tt.src, g, tt.field)
			continue
		}
		if got := g.mayHold(tt.alert); got != tt.may {
			t.Errorf("%q on %v: mayHold %v, want %v", tt.src, tt.alert, got, tt.may)
		}
	}
}

// When answers from the guard for the alerts it rules out, and only after the playbook's vars
// have had their say.
func TestWhenGuardKeepsVarsErrors(t *testing.T) {
	t.Parallel()
	p, err := compile(`alert.type == "phishing" && vars.v > 1`, scope{}, true)
	if err != nil || p.guard == nil {
		t.Fatalf("compile: %v, guard %v", err, p.guard)
	}
	v, err := compile(`alert.missing.x`, scope{}, false)
	if err != nil {
		t.Fatal(err)
	}
	b := &Playbook{Name: "g", when: p}
	env := &Env{Alert: map[string]any{"type": "malware"}}
	if ok, err := b.When(env); ok || err != nil {
		t.Errorf("When, guarded out = %v, %v; want false, nil", ok, err)
	}
	b.vars = []varDef{{name: "v", val: whole{v}}}
	if _, err := b.When(env); err == nil {
		t.Error("When with a var that fails: no error; the guard hid it")
	}
}
