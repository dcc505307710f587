package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/jsonval"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// testFile is a file of playbook tests, as `worker test` reads it (docs/playbooks.md, "Testing
// playbooks").
type testFile struct {
	Playbooks string         `yaml:"playbooks"` // the playbooks directory, relative to the file
	Tests     []playbookTest `yaml:"tests"`
}

type playbookTest struct {
	Name    string            `yaml:"name"`
	Subject string            `yaml:"subject"`
	ID      string            `yaml:"id"`
	Headers map[string]string `yaml:"headers"`
	Now     time.Time         `yaml:"now"`
	Alert   map[string]any    `yaml:"alert"`
	Outputs stubs             `yaml:"outputs"`
	Expect  expectation       `yaml:"expect"`
}

type expectation struct {
	// Playbooks are exactly the playbooks that must run, with what must become of them; none
	// (an empty mapping or no key) means the alert is unmatched.
	Playbooks map[string]playbookExpect `yaml:"playbooks"`
}

type playbookExpect struct {
	Status string                `yaml:"status"`
	Steps  map[string]stepExpect `yaml:"steps"`
}

// stepExpect is a step's status, written alone or with the inputs it must send and a fragment
// of its error.
type stepExpect struct {
	Status string `yaml:"status"`
	Inputs any    `yaml:"inputs"`
	Error  string `yaml:"error"`
}

func (s *stepExpect) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		s.Status = n.Value
		return nil
	}
	// Node.Decode does not refuse unknown keys, so this does.
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			if k := n.Content[i]; !slices.Contains([]string{"status", "inputs", "error"}, k.Value) {
				return fmt.Errorf("line %d: unknown key %q in a step's expectation (status, inputs, error)", k.Line, k.Value)
			}
		}
	}
	type plain stepExpect
	return n.Decode((*plain)(s))
}

// testLines are the lines the tests of a test file start on.
func testLines(data []byte) []int {
	var doc struct {
		Tests []yaml.Node `yaml:"tests"`
	}
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	lines := make([]int, len(doc.Tests))
	for i, n := range doc.Tests {
		lines[i] = n.Line
	}
	return lines
}

var stepStatuses = []string{engine.StatusSucceeded, engine.StatusFailed, engine.StatusSkipped, engine.StatusDenied, engine.StatusShadowed}

// cmdTest runs playbook test files: each test's alert through the real engine with the test's
// step outputs standing in for the vendors, compared with what the test expects.
func cmdTest(ctx context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	var s settings
	var verbose bool
	f := newEnvFlags("test", env)
	defineCommon(f, &s)
	f.Bool(&verbose, "v", "", false, "print every test, not only the failures")
	pos, err := parseWithArgs(f, args, stderr)
	if err != nil {
		return err
	}
	files, err := testPaths(pos)
	if err != nil {
		return err
	}
	total, failed := 0, 0
	for _, path := range files {
		n, bad, err := runTestFile(ctx, path, s.playbooks, verbose, stdout)
		if err != nil {
			return err
		}
		total, failed = total+n, failed+bad
	}
	fmt.Fprintf(stdout, "%d test(s) in %d file(s), %d failed\n", total, len(files), failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d playbook test(s) failed", failed, total)
	}
	return nil
}

// testPaths lists the test files named by args (files, or every *.yaml / *.yml in a directory).
func testPaths(args []string) ([]string, error) {
	if len(args) == 0 {
		return nil, errors.New("name the test files or directories to run (e.g. worker test playbook-tests)")
	}
	var out []string
	for _, a := range args {
		info, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("tests: %w", err)
		}
		if !info.IsDir() {
			out = append(out, a)
			continue
		}
		files, err := playbook.Files(a)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no test files (*.yaml, *.yml) in %s", a)
		}
		out = append(out, files...)
	}
	return out, nil
}

func runTestFile(ctx context.Context, path, defaultPlaybooks string, verbose bool, w io.Writer) (total, failed int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read tests: %w", err)
	}
	var tf testFile
	if err := strictYAML(data, &tf); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	if len(tf.Tests) == 0 {
		return 0, 0, fmt.Errorf("%s: no tests", path)
	}
	dir := defaultPlaybooks
	if tf.Playbooks != "" {
		dir = relTo(path, tf.Playbooks)
	}
	pbs, err := loadPlaybooks(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: playbooks %s: %w", path, dir, err)
	}
	lines := testLines(data)
	for i, t := range tf.Tests {
		where := path
		if i < len(lines) {
			where = fmt.Sprintf("%s:%d", path, lines[i])
		}
		name := t.Name
		if name == "" {
			name = fmt.Sprintf("test %d", i+1)
		}
		if err := t.check(pbs); err != nil {
			return 0, 0, fmt.Errorf("%s: %s: %w", where, name, err)
		}
		diffs := t.run(ctx, pbs)
		total++
		if len(diffs) == 0 {
			if verbose {
				fmt.Fprintf(w, "ok    %s %s\n", where, name)
			}
			continue
		}
		failed++
		fmt.Fprintf(w, "FAIL  %s %s\n", where, name)
		for _, d := range diffs {
			fmt.Fprintf(w, "      %s\n", strings.ReplaceAll(d, "\n", "\n      "))
		}
	}
	return total, failed, nil
}

// check finds the mistakes in a test itself: they stop the run rather than fail the test.
func (t *playbookTest) check(pbs []*playbook.Playbook) error {
	var problems []string
	if t.Subject == "" {
		problems = append(problems, "subject is required")
	}
	if t.Alert == nil {
		problems = append(problems, "alert is required (a mapping: the alert's JSON)")
	}
	if err := t.Outputs.check(pbs); err != nil {
		problems = append(problems, "outputs: "+err.Error())
	}
	for _, name := range sortedKeys(t.Expect.Playbooks) {
		pb := findPlaybook(pbs, name)
		if pb == nil {
			problems = append(problems, fmt.Sprintf("expect: no playbook %q is loaded", name))
			continue
		}
		pe := t.Expect.Playbooks[name]
		if pe.Status != "" && !slices.Contains(outcomeStatuses, pe.Status) {
			problems = append(problems, fmt.Sprintf("expect: %s: status %q: use one of %s", name, pe.Status, strings.Join(outcomeStatuses, ", ")))
		}
		for _, id := range sortedKeys(pe.Steps) {
			if !slices.ContainsFunc(pb.Steps, func(s *playbook.Step) bool { return s.ID == id }) {
				problems = append(problems, fmt.Sprintf("expect: %s has no step %q", name, id))
			} else if st := pe.Steps[id].Status; st == "" || !slices.Contains(stepStatuses, st) {
				problems = append(problems, fmt.Sprintf("expect: %s.%s: status %q: use one of %s", name, id, st, strings.Join(stepStatuses, ", ")))
			}
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func findPlaybook(pbs []*playbook.Playbook, name string) *playbook.Playbook {
	for _, pb := range pbs {
		if pb.Name == name {
			return pb
		}
	}
	return nil
}

// run runs the test and returns how the result differs from what it expects.
func (t *playbookTest) run(ctx context.Context, pbs []*playbook.Playbook) []string {
	now := t.Now
	if now.IsZero() {
		now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	id := t.ID
	if id == "" {
		id, _ = t.Alert["id"].(string)
	}
	if id == "" {
		id = "test:1"
	}
	headers := t.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	// The alert as the worker would decode it from JSON.
	b, err := json.Marshal(t.Alert)
	if err != nil {
		return []string{"alert: " + err.Error()}
	}
	body, _ := jsonval.Decode(b)
	alert, _ := body.(map[string]any)
	p := makePlan(ctx, &dryRun{pbs: pbs, stubs: t.Outputs, now: func() time.Time { return now }},
		engine.Alert{ID: id, Subject: t.Subject, Headers: headers, Body: alert, Deliveries: 1})

	var diffs []string
	var ran []string
	plans := map[string]playbookPlan{}
	for _, pp := range p.Playbooks {
		plans[pp.Name] = pp
		if pp.Runs {
			ran = append(ran, pp.Name)
		}
	}
	want := sortedKeys(t.Expect.Playbooks)
	if !slices.Equal(ran, want) {
		diffs = append(diffs, fmt.Sprintf("playbooks that run: want [%s], got [%s]%s", strings.Join(want, " "), strings.Join(ran, " "), notRunWhy(plans, want)))
	}
	for _, name := range want {
		pp, pe := plans[name], t.Expect.Playbooks[name]
		if !pp.Runs {
			continue
		}
		if pe.Status != "" && pe.Status != pp.Status {
			d := fmt.Sprintf("%s status: want %s, got %s", name, pe.Status, pp.Status)
			if pp.Error != "" {
				d += " (" + pp.Error + ")"
			}
			diffs = append(diffs, d)
		}
		pb := findPlaybook(pbs, name)
		for _, id := range sortedKeys(pe.Steps) {
			diffs = append(diffs, stepDiffs(name, pb, pp, id, pe.Steps[id])...)
		}
	}
	return diffs
}

// notRunWhy says why the expected playbooks that did not run did not.
func notRunWhy(plans map[string]playbookPlan, want []string) string {
	var b strings.Builder
	for _, name := range want {
		pp, ok := plans[name]
		if !ok || pp.Runs {
			continue
		}
		fmt.Fprintf(&b, "\n%s: not run: %s", name, pp.NotRun)
		for _, w := range pp.Why {
			fmt.Fprintf(&b, "\n  - %s", whyText(w))
		}
	}
	return b.String()
}

func whyText(w whyPlan) string {
	s := w.Part + " is false"
	if w.Error != "" {
		s += " (cannot be evaluated: " + w.Error + ")"
	}
	var saw []string
	for _, seen := range w.Saw {
		saw = append(saw, fmt.Sprintf("%s was %s", seen.Expr, compactJSON(seen.Value)))
	}
	if len(saw) > 0 {
		s += ": " + strings.Join(saw, ", ")
	}
	return s
}

func stepDiffs(pbName string, pb *playbook.Playbook, pp playbookPlan, id string, se stepExpect) []string {
	var sp stepPlan
	for _, s := range pp.Steps {
		if s.ID == id {
			sp = s
		}
	}
	var step *playbook.Step
	for _, s := range pb.Steps {
		if s.ID == id {
			step = s
		}
	}
	label := pbName + "." + id
	var diffs []string
	if se.Status != sp.Status {
		d := fmt.Sprintf("%s status: want %s, got %s", label, se.Status, sp.Status)
		switch {
		case sp.Skipped != "":
			d += ": " + sp.Skipped
			for _, w := range sp.Why {
				d += "\n  - " + whyText(w)
			}
		case sp.Error != "":
			d += ": " + sp.Error
		}
		diffs = append(diffs, d)
	}
	if se.Error != "" && !strings.Contains(sp.Error, se.Error) {
		diffs = append(diffs, fmt.Sprintf("%s error: want one containing %q, got %q", label, se.Error, sp.Error))
	}
	if se.Inputs != nil {
		want, err := normaliseInputs(step, se.Inputs)
		if err != nil {
			return append(diffs, fmt.Sprintf("%s inputs: the expected inputs are not valid for %s: %v", label, step.Action, err))
		}
		if got := canonicalJSON(sp.Inputs); got != want {
			diffs = append(diffs, fmt.Sprintf("%s inputs:\nwant %s\ngot  %s", label, want, got))
		}
	}
	return diffs
}

// normaliseInputs puts expected inputs through the action's own checks (so `status: closed`
// compares equal to the 3 the vendor is sent), one map per item for a foreach step.
func normaliseInputs(step *playbook.Step, v any) (string, error) {
	spec, _ := catalogue().Spec(step.Action)
	one := func(x any) (any, error) {
		m, ok := asStringMap(x)
		if !ok {
			return nil, fmt.Errorf("want a mapping of input names to values, got %s", compactJSON(x))
		}
		in, err := spec.Check(actions.Inputs(m))
		return map[string]any(in), err
	}
	if !step.HasForEach() {
		in, err := one(v)
		if err != nil {
			return "", err
		}
		return canonicalJSON(in), nil
	}
	items, ok := v.([]any)
	if !ok {
		return "", errors.New("a foreach step's inputs are a list, one mapping per item")
	}
	out := make([]any, len(items))
	for i, it := range items {
		if it == nil {
			continue
		}
		in, err := one(it)
		if err != nil {
			return "", fmt.Errorf("item %d: %w", i, err)
		}
		out[i] = in
	}
	return canonicalJSON(out), nil
}

func asStringMap(x any) (map[string]any, bool) {
	switch m := x.(type) {
	case map[string]any:
		return m, true
	}
	return nil, false
}

// canonicalJSON is v as JSON with sorted keys and every number as JSON writes it, so values
// from YAML and from the engine compare equal when they are.
func canonicalJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return string(b)
	}
	return compactJSON(x)
}
