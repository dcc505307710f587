package playbook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
)

type stepView struct {
	ID, Action string
	Line       int
	Retry      actions.RetryPolicy
	OnError    OnError
}

func viewSteps(steps []*Step) []stepView {
	out := make([]stepView, len(steps))
	for i, s := range steps {
		out[i] = stepView{s.ID, s.Action, s.Line, s.Retry, s.OnError}
	}
	return out
}

func loadValid(tb testing.TB) map[string]*Playbook {
	tb.Helper()
	books, err := LoadDir("testdata/valid", testCatalogue(tb))
	if err != nil {
		tb.Fatalf("load valid playbooks:\n%v", err)
	}
	byName := map[string]*Playbook{}
	for _, b := range books {
		byName[b.Name] = b
	}
	return byName
}

func TestLoadDirValid(t *testing.T) {
	t.Parallel()
	books, err := LoadDir("testdata/valid", testCatalogue(t))
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	var names []string
	for _, b := range books {
		names = append(names, b.Name)
	}
	// Sorted by name; the subdirectory is read, the hidden directory and README.txt are not.
	if want := []string{"incident-close", "phishing-quarantine"}; !slices.Equal(names, want) {
		t.Fatalf("names = %q, want %q", names, want)
	}

	tests := []struct {
		name        string
		description string
		file        string
		on          []string
		vars        map[string]any
		vendors     []string
		steps       []stepView
	}{
		{
			name:        "phishing-quarantine",
			description: "Quarantine mail that Harmony Email marks as malicious phishing",
			file:        filepath.Join("testdata", "valid", "phishing.yaml"),
			on:          []string{"soar.alerts.checkpoint.>"},
			vars:        map[string]any{"actor": "riposte", "max": 3, "ratio": 0.5, "tags": []any{"mail", "phishing"}},
			vendors:     []string{"checkpoint"},
			steps: []stepView{
				{"event", "checkpoint.get_event", 11, actions.DefaultRetryPolicy(), OnErrorStop},
				{"quarantine", "checkpoint.quarantine_entity", 15, actions.RetryPolicy{
					MaxAttempts: 6, InitialInterval: 500 * time.Millisecond, MaxInterval: 30 * time.Second,
					AttemptTimeout: 10 * time.Second,
				}, OnErrorContinue},
			},
		},
		{
			name:        "incident-close",
			description: "Close a GravityZone incident and tell the SOC",
			file:        filepath.Join("testdata", "valid", "gravityzone", "incident.yml"),
			on:          []string{"soar.alerts.gravityzone.*", "soar.alerts.edr.malware"},
			vars:        map[string]any{"min_severity": 7, "channel": "soc"},
			vendors:     []string{"gravityzone", "nats"},
			steps: []stepView{
				{"close", "gravityzone.change_incident_status", 12, actions.DefaultRetryPolicy(), OnErrorStop},
				{"notify", "nats.publish", 18, actions.DefaultRetryPolicy(), OnErrorStop},
			},
		},
	}
	byName := map[string]*Playbook{}
	for _, b := range books {
		byName[b.Name] = b
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := byName[tt.name]
			if b.Description != tt.description {
				t.Errorf("Description = %q, want %q", b.Description, tt.description)
			}
			if b.File != tt.file {
				t.Errorf("File = %q, want %q", b.File, tt.file)
			}
			if !slices.Equal(b.On, tt.on) {
				t.Errorf("On = %q, want %q", b.On, tt.on)
			}
			if !reflect.DeepEqual(b.Vars, tt.vars) {
				t.Errorf("Vars = %#v, want %#v", b.Vars, tt.vars)
			}
			if got := b.Vendors(); !slices.Equal(got, tt.vendors) {
				t.Errorf("Vendors() = %q, want %q", got, tt.vendors)
			}
			if got := viewSteps(b.Steps); !reflect.DeepEqual(got, tt.steps) {
				t.Errorf("Steps =\n%+v\nwant\n%+v", got, tt.steps)
			}
		})
	}
}

func TestLoadDirErrors(t *testing.T) {
	t.Parallel()
	_, err := LoadDir("testdata/no-such-dir", testCatalogue(t))
	var probs Problems
	if err == nil || errors.As(err, &probs) {
		t.Fatalf("LoadDir(missing dir) = %v, want a plain error", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap os.ErrNotExist", err)
	}

	_, err = LoadFiles([]string{"testdata/valid/phishing.yaml", "testdata/no-such-file.yaml"}, testCatalogue(t))
	if want := "testdata/no-such-file.yaml: read playbook: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("LoadFiles(missing file) = %v, want %q", err, want)
	}
}

// Each case is a file (or two) in testdata/invalid and every problem it must produce, exactly.
var invalidCases = []struct {
	name  string
	files []string
	want  []string
}{
	{"yaml syntax error", []string{"yaml-syntax.yaml"}, []string{
		// yaml.v3 reports a parser error on the line before the one at fault (go-yaml/yaml#205);
		// the line is yaml's own.
		`yaml-syntax.yaml:2: invalid yaml: did not find expected ',' or ']'`,
	}},
	{"yaml tab", []string{"yaml-tab.yaml"}, []string{
		`yaml-tab.yaml:4: invalid yaml: found character that cannot start any token`,
	}},
	{"empty file", []string{"empty.yaml"}, []string{
		`empty.yaml:1: empty file; a playbook needs name, on and steps`,
	}},
	{"not a mapping", []string{"not-mapping.yaml"}, []string{
		`not-mapping.yaml:1: a playbook must be a mapping with name, on and steps`,
	}},
	{"two documents", []string{"two-documents.yaml"}, []string{
		`two-documents.yaml:7: a second yaml document; a file holds one playbook`,
	}},
	{"unknown keys", []string{"unknown-key.yaml"}, []string{
		`unknown-key.yaml:1: missing required key "steps"`,
		`unknown-key.yaml:3: unknown key "descripton"; did you mean "description"?`,
		`unknown-key.yaml:4: unknown key "step"; did you mean "steps"?`,
	}},
	{"missing keys", []string{"missing-keys.yaml"}, []string{
		`missing-keys.yaml:1: missing required key "name"`,
		`missing-keys.yaml:1: missing required key "on"`,
		`missing-keys.yaml:1: missing required key "steps"`,
	}},
	{"empty on and steps", []string{"no-steps.yaml"}, []string{
		`no-steps.yaml:2: on must list at least one subject filter`,
		`no-steps.yaml:3: steps must list at least one step`,
	}},
	{"bad name", []string{"bad-name.yaml"}, []string{
		`bad-name.yaml:1: name "phishing quarantine" must match [A-Za-z0-9_-]+, as it becomes a subject token`,
	}},
	{"reserved name", []string{"reserved-name.yaml"}, []string{
		`reserved-name.yaml:1: name "unmatched" is reserved for alerts that no playbook matches`,
	}},
	{"duplicate name in two files", []string{"dup-name-a.yaml", "dup-name-b.yaml"}, []string{
		`dup-name-a.yaml:1: duplicate playbook name "twin", also in testdata/invalid/dup-name-b.yaml:2`,
		`dup-name-b.yaml:2: duplicate playbook name "twin", also in testdata/invalid/dup-name-a.yaml:1`,
	}},
	{"bad subject filters", []string{"bad-subject.yaml"}, []string{
		`bad-subject.yaml:3: subject filter "soar..checkpoint" has an empty token`,
		`bad-subject.yaml:4: subject filter "soar.>.checkpoint" has ">" before the last token`,
		`bad-subject.yaml:5: subject filter "soar.alerts checkpoint" contains whitespace`,
		`bad-subject.yaml:6: subject filter "soar.alerts.check*" has a wildcard inside a token; "*" and ">" must be whole tokens`,
		`bad-subject.yaml:7: subject filter "" is empty`,
	}},
	{"unknown action", []string{"unknown-action.yaml"}, []string{
		`unknown-action.yaml:7: step "q": unknown action "checkpoint.quarantine"; did you mean checkpoint.quarantine_entity?`,
		`unknown-action.yaml:11: step "r": unknown action "teleport.everything"`,
	}},
	{"unknown input", []string{"unknown-input.yaml"}, []string{
		`unknown-input.yaml:6: step "q": missing required input "entityIds" of checkpoint.quarantine_entity`,
		`unknown-input.yaml:7: step "q": action checkpoint.quarantine_entity has no input "entityId"; did you mean "entityIds"?`,
		`unknown-input.yaml:8: step "q": action checkpoint.quarantine_entity has no input "colour"`,
	}},
	{"missing input", []string{"missing-input.yaml"}, []string{
		`missing-input.yaml:4: step "event": missing required input "eventId" of checkpoint.get_event`,
		`missing-input.yaml:8: step "close": missing required input "status" of gravityzone.change_incident_status`,
	}},
	{"literal of the wrong type or outside the enum", []string{"wrong-type.yaml"}, []string{
		`wrong-type.yaml:7: step "q": input "entityIds" must be a list of strings, got int 5`,
		`wrong-type.yaml:8: step "q": input "entityActionParam" must be a string, got a list`,
		`wrong-type.yaml:12: step "close": input "incidentId" is required; got null`,
		`wrong-type.yaml:13: step "close": input "status" must be one of open (1), investigating (2), closed (3), false_positive (4), got "shut"`,
		`wrong-type.yaml:14: step "close": input "incidentType" must be a whole number, got string "two"`,
		`wrong-type.yaml:18: step "empty": input "entityIds" must not be empty`,
	}},
	{"inputs that do not fit together, when all are literals", []string{"cross-check.yaml"}, []string{
		`cross-check.yaml:6: step "block": hashList item 1 is not a hash of hashType 2`,
	}},
	{"a concurrency key that reads a step", []string{"bad-concurrency.yaml"}, []string{
		`bad-concurrency.yaml:3: concurrency_key: refers to step "event"; the key is decided before any step runs`,
	}},
	{"duplicate step id", []string{"dup-step.yaml"}, []string{
		`dup-step.yaml:7: duplicate step id "event" (first at line 4)`,
	}},
	{"references to later, own and unknown steps", []string{"step-refs.yaml"}, []string{
		`step-refs.yaml:3: when: refers to step "event", which runs later`,
		`step-refs.yaml:6: step "event": refers to step "quarantine", which runs later`,
		`step-refs.yaml:9: step "event": refers to itself`,
		`step-refs.yaml:11: step "quarantine": refers to unknown step "evnt"; did you mean "event"?`,
		`step-refs.yaml:11: step "quarantine": refers to unknown step "nope"`,
	}},
	{"bad expressions", []string{"bad-expr.yaml"}, []string{
		`bad-expr.yaml:3: when: expected bool, but got int`,
		`bad-expr.yaml:6: step "event": if: unknown name alrt (1:1)`,
		`bad-expr.yaml:9: step "event" input "eventId": unexpected token EOF (1:15)`,
		// The `if: |` block starts on line 11; the mistake is on its second line.
		`bad-expr.yaml:13: step "quarantine": if: type playbook.StepState has no field outptu (2:13)`,
		`bad-expr.yaml:17: step "quarantine" input "entityActionParam": unterminated "${{": missing "}}"`,
		`bad-expr.yaml:19: step "third": if must be an expression`,
		`bad-expr.yaml:22: step "third" input "eventId": empty "${{ }}"`,
	}},
	{"bad retry, timeout and on_error", []string{"bad-retry.yaml"}, []string{
		`bad-retry.yaml:8: step "event": retry.max_attempts must be at least 1, got 0`,
		`bad-retry.yaml:9: step "event": retry.initial_interval: invalid duration "5x"; write it like 500ms or 30s`,
		`bad-retry.yaml:10: step "event": retry.max_interval: invalid duration "10"; write it like 500ms or 30s`,
		`bad-retry.yaml:11: step "event": retry: unknown key "max_attempt"; did you mean "max_attempts"?`,
		`bad-retry.yaml:12: step "event": timeout must be positive, got "-1s"`,
		`bad-retry.yaml:13: step "event": on_error must be stop or continue, got "halt"`,
		`bad-retry.yaml:17: step "again": retry.max_attempts must be a whole number, got "many"`,
		`bad-retry.yaml:17: step "again": retry.initial_interval 1m0s is longer than max_interval 1s`,
	}},
	{"bad steps and vars", []string{"bad-steps.yaml"}, []string{
		`bad-steps.yaml:4: vars.who: refers to step "first"; vars are evaluated before any step runs`,
		`bad-steps.yaml:6: step 1 must be a mapping with id and action`,
		`bad-steps.yaml:7: step 2: missing required key "id"`,
		`bad-steps.yaml:9: step id "bad-id" must match [A-Za-z_][A-Za-z0-9_]*, as expressions read it as steps.<id>`,
		`bad-steps.yaml:9: step "bad-id": missing required key "action"`,
		`bad-steps.yaml:10: step "bad-id": unknown key "acton"; did you mean "action"?`,
		`bad-steps.yaml:11: step "bad-id": with must be a mapping of input names to values`,
	}},
	{"duplicate keys and ${{ }} in when", []string{"dup-key.yaml"}, []string{
		`dup-key.yaml:3: duplicate key "name" (first at line 1)`,
		`dup-key.yaml:4: when is an expression already; write it without "${{ }}"`,
		`dup-key.yaml:11: step "event": with: duplicate key "eventId" (first at line 10)`,
		`dup-key.yaml:15: step "q" input "data": duplicate key "a" (first at line 14)`,
	}},
	{"vars that read later, own, unknown vars or steps, and reads of unknown vars", []string{"bad-vars.yaml"}, []string{
		`bad-vars.yaml:3: when: refers to unknown var "hots"; did you mean "host"?`,
		`bad-vars.yaml:5: vars.host: refers to var "owner", which is declared later`,
		`bad-vars.yaml:6: vars.owner: refers to itself`,
		`bad-vars.yaml:7: vars.label: refers to unknown var "nope"`,
		`bad-vars.yaml:8: vars.step: refers to step "e"; vars are evaluated before any step runs`,
		`bad-vars.yaml:9: vars.broken: unexpected token EOF (1:9)`,
		// vars.after reads vars.broken, which is declared: no second problem for one mistake.
		`bad-vars.yaml:13: step "e": refers to unknown var "lable"; did you mean "label"?`,
		`bad-vars.yaml:17: concurrency_key: refers to unknown var "ownr"; did you mean "owner"?`,
	}},
	{"foreach that is no list, items read outside foreach, bad as", []string{"bad-foreach.yaml"}, []string{
		`bad-foreach.yaml:5: step "text": foreach must be a list, or ${{ }} yielding one; text around ${{ }} makes a string`,
		`bad-foreach.yaml:9: step "scalar": foreach must be a list, or ${{ }} yielding one`,
		`bad-foreach.yaml:13: step "typed": foreach must yield a list, got string`,
		`bad-foreach.yaml:17: step "noitem": if: unknown name item (1:1)`,
		`bad-foreach.yaml:19: step "noitem" input "eventId": unknown name item (1:1)`,
		`bad-foreach.yaml:21: step "stray_as": as names the item of foreach, and the step has no foreach`,
		`bad-foreach.yaml:26: step "reserved": as "alert" is a name expressions already have; pick another`,
		// With `as: host`, "item" means nothing.
		`bad-foreach.yaml:34: step "renamed" input "eventId": unknown name item (1:1)`,
		`bad-foreach.yaml:36: step "later": refers to step "last", which runs later`,
	}},
	{"bad defaults and mode", []string{"bad-defaults.yaml"}, []string{
		`bad-defaults.yaml:3: mode must be live or shadow, got "dry-run"`,
		`bad-defaults.yaml:5: defaults: retry.max_attempts must be at least 1, got 0`,
		`bad-defaults.yaml:5: defaults: retry.initial_interval 1m0s is longer than max_interval 1s`,
		`bad-defaults.yaml:6: defaults: timeout: invalid duration "soon"; write it like 500ms or 30s`,
		`bad-defaults.yaml:7: defaults: on_error must be stop or continue, got "ignore"`,
		`bad-defaults.yaml:8: defaults: unknown key "if"`,
		`bad-defaults.yaml:9: defaults: unknown key "retyr"; did you mean "retry"?`,
	}},
	{"defaults and mode of the wrong kind", []string{"bad-defaults-kind.yaml"}, []string{
		`bad-defaults-kind.yaml:3: mode must be a string`,
		`bad-defaults-kind.yaml:4: defaults must be a mapping of retry, timeout, on_error`,
	}},
	{"helper patterns and networks written as literals are checked at load", []string{"bad-helpers.yaml"}, []string{
		`bad-helpers.yaml:3: when: inCIDR: "10.0.0.0/33" is not a network such as 10.0.0.0/8 or an IP address (1:18)`,
		`bad-helpers.yaml:6: step "e": if: globMatch: pattern "[a-": "[" at 0 is never closed by "]" (1:11)`,
		// expr's own matches operator compiles a literal pattern at load too.
		"bad-helpers.yaml:9: step \"e\" input \"eventId\": error parsing regexp: missing closing ): `(` (1:9)",
		`bad-helpers.yaml:11: step "f": if: cannot use int as argument (type []string) to call inCIDR  (1:64)`,
		`bad-helpers.yaml:13: step "f" input "eventId": domainMatch: pattern "a..b" has an empty label (1:13)`,
		`bad-helpers.yaml:15: step "g": if: too many arguments to call dig (1:37)`,
	}},
	{"aliases that multiply", []string{"aliases.yaml"}, []string{
		`aliases.yaml:10: step "q" input "data": the file holds more than 100000 values once its yaml aliases are followed`,
	}},
	{"several problems in one file, all reported", []string{"several.yaml"}, []string{
		`several.yaml:1: name "several problems" must match [A-Za-z0-9_-]+, as it becomes a subject token`,
		`several.yaml:3: subject filter "soar.alerts..x" has an empty token`,
		`several.yaml:7: step "event": unknown action "checkpoint.get_evnt"; did you mean checkpoint.get_event?`,
		`several.yaml:11: step "quarantine": refers to step "later", which runs later`,
		`several.yaml:13: step "quarantine": missing required input "entityIds" of checkpoint.quarantine_entity`,
		`several.yaml:14: step "quarantine": action checkpoint.quarantine_entity has no input "entityId"; did you mean "entityIds"?`,
		`several.yaml:15: step "quarantine": retry.max_attempts must be at least 1, got 0`,
		`several.yaml:16: step "quarantine": on_error must be stop or continue, got "ignore"`,
		`several.yaml:20: step "later": timeout: invalid duration "soon"; write it like 500ms or 30s`,
	}},
}

func baseLines(probs Problems) []string {
	out := make([]string, len(probs))
	for i, p := range probs {
		out[i] = fmt.Sprintf("%s:%d: %s", filepath.Base(p.File), p.Line, p.Msg)
	}
	return out
}

func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	cat := testCatalogue(t)
	for _, tt := range invalidCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var paths []string
			for _, f := range tt.files {
				paths = append(paths, filepath.Join("testdata", "invalid", f))
			}
			books, err := LoadFiles(paths, cat)
			if books != nil {
				t.Errorf("LoadFiles returned %d playbooks alongside problems", len(books))
			}
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("LoadFiles error = %v (%T), want Problems", err, err)
			}
			if got := baseLines(probs); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, p := range probs {
				if !strings.HasPrefix(p.File, filepath.Join("testdata", "invalid")) {
					t.Errorf("Problem.File = %q, want the path as opened", p.File)
				}
			}
		})
	}
}

// Loading the whole directory reports every problem of every file, in file then line order.
func TestLoadDirInvalidReportsAll(t *testing.T) {
	t.Parallel()
	_, err := LoadDir("testdata/invalid", testCatalogue(t))
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("LoadDir error = %v, want Problems", err)
	}
	var want []string
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	for _, f := range files {
		for _, tt := range invalidCases {
			for _, line := range tt.want {
				if strings.HasPrefix(line, filepath.Base(f)+":") {
					want = append(want, line)
				}
			}
		}
	}
	if got := baseLines(probs); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(probs) {
		t.Errorf("Error() has %d lines for %d problems", len(lines), len(probs))
	}
}

func TestProblemsError(t *testing.T) {
	t.Parallel()
	ps := Problems{
		{File: "b.yaml", Line: 3, Msg: "third"},
		{File: "a.yaml", Line: 9, Msg: "second"},
		{File: "a.yaml", Line: 2, Msg: "first"},
		{File: "c.yaml", Msg: "read playbook: permission denied"},
	}
	ps.sort()
	want := "a.yaml:2: first\na.yaml:9: second\nb.yaml:3: third\nc.yaml: read playbook: permission denied"
	if got := ps.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
}

// loadInline loads one playbook written for a test, for cases too small to deserve a fixture.
func loadInline(tb testing.TB, src string) *Playbook {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "inline.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		tb.Fatal(err)
	}
	books, err := LoadFiles([]string{path}, testCatalogue(tb))
	if err != nil {
		tb.Fatalf("load inline playbook:\n%v", err)
	}
	return books[0]
}
