package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// golden compares got with testdata/<name>, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./cmd/worker -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./cmd/worker -run '%s' -update rewrites it):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

func runWorker(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = dispatch(context.Background(), args, noEnv, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// The shipped playbooks' own tests pass: the playbooks do what their tests say.
func TestShippedPlaybookTests(t *testing.T) {
	t.Parallel()
	out, errOut, code := runWorker(t, "", "test", "-v", "../../playbook-tests")
	if code != 0 {
		t.Fatalf("worker test playbook-tests: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, ", 0 failed") || strings.Count(out, "\nok ") < 10 {
		t.Errorf("report:\n%s", out)
	}
}

func TestPlaybookTestReportsDifferences(t *testing.T) {
	t.Parallel()
	out, errOut, code := runWorker(t, "", "test", "testdata/playtest/failing.yaml")
	if code != 1 || !strings.Contains(errOut, "2 of 3 playbook test(s) failed") {
		t.Errorf("exit %d, stderr %q; want 1 and the count", code, errOut)
	}
	golden(t, "playtest/failing.golden", out)
}

func TestPlaybookTestFileMistakes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want []string
	}{
		{"testdata/playtest/badkey.yaml", []string{"testdata/playtest/badkey.yaml:", "line 6: field expcet not found"}},
		{"testdata/playtest/badexpect.yaml", []string{
			"testdata/playtest/badexpect.yaml:3: names that do not exist:",
			`outputs: "nosuchstep" names no step of the playbooks`,
			`expect: no playbook "no-such-playbook" is loaded`,
			`expect: phishing-quarantine: status "great"`,
			`expect: phishing-quarantine.event: status "fine"`,
			`expect: phishing-quarantine has no step "lookup"`}},
		{"testdata/playtest/missing.yaml", []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			t.Parallel()
			_, errOut, code := runWorker(t, "", "test", tt.file)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
	if _, errOut, code := runWorker(t, "", "test"); code != 1 || !strings.Contains(errOut, "name the test files") {
		t.Errorf("no arguments: exit %d, %s", code, errOut)
	}
}

func TestPlanGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, subject, alert string
		args                 []string
	}{
		{"phishing", "soar.alerts.checkpoint.phishing", `{"id":"p-1","type":"phishing","confidenceIndicator":"malicious","eventId":"ev-9","entityId":"ent-9"}`, nil},
		{"phishing-outputs", "soar.alerts.checkpoint.phishing", `{"id":"p-2","type":"phishing","confidenceIndicator":"malicious","eventId":"ev-9","entityId":"ent-9"}`,
			[]string{"--outputs", "testdata/plan/outputs.yaml"}},
		{"incident-low", "soar.alerts.gravityzone.incident", `{"id":"p-3","severity":"low","endpointId":"ep-1"}`, nil},
		{"incident-json", "soar.alerts.gravityzone.incident", `{"id":"p-4","severity":"critical","endpointId":"ep-1","incidentId":"inc-1","sha256":[]}`, []string{"--json"}},
		{"unmatched", "soar.alerts.siem.login", `{"user":"bob"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"plan", "--playbooks", shippedPlaybooks, "--subject", tt.subject}, tt.args...)
			out, errOut, code := runWorker(t, tt.alert, append(args, "-")...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			golden(t, "plan/"+tt.name+".golden", out)
		})
	}
}

func TestValidatePaths(t *testing.T) {
	t.Parallel()
	out, errOut, code := runWorker(t, "", "validate", shippedPlaybooks, "testdata/approvals/two.yaml")
	if code != 0 || !strings.Contains(out, "ok  isolate-two-approvers") || !strings.Contains(out, "ok  phishing-quarantine") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runWorker(t, "", "validate", shippedPlaybooks, "testdata/broken")
	if code != 1 || !strings.Contains(errOut, "testdata/broken/") {
		t.Errorf("a broken directory among good ones: exit %d\n%s", code, errOut)
	}
	_, errOut, code = runWorker(t, "", "validate", shippedPlaybooks, shippedPlaybooks+"/phishing-quarantine.yaml")
	if code != 1 || !strings.Contains(errOut, `playbook name "phishing-quarantine"`) {
		t.Errorf("the same playbook twice: exit %d\n%s", code, errOut)
	}
	_, errOut, code = runWorker(t, "", "validate", "testdata/nowhere")
	if code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("a missing path: exit %d\n%s", code, errOut)
	}
}
