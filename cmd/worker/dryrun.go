package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// A dry run is the real engine over the real playbooks with every action replaced by a stand-in
// that answers what it is told per step and records what it was sent: `worker plan` and
// `worker test` both run alerts this way, so what they say is what the worker would do.

// stub is what one step's vendor answers in a dry run: an output (the same for every item of a
// foreach, unless outputs gives one per item), or an error; for a gated step, the decision.
type stub struct {
	Output   map[string]any   `yaml:"output" json:"output,omitempty"`
	Outputs  []map[string]any `yaml:"outputs" json:"outputs,omitempty"`
	Error    string           `yaml:"error" json:"error,omitempty"`
	Approval string           `yaml:"approval" json:"approval,omitempty"` // approve (the default) or deny
	By       string           `yaml:"by" json:"by,omitempty"`
}

// stubs are keyed by "<playbook>.<step>", or "<step>" for that step id in every playbook.
type stubs map[string]stub

func (s stubs) check(pbs []*playbook.Playbook) error {
	var problems []string
	for key, st := range s {
		found := false
		for _, pb := range pbs {
			for _, step := range pb.Steps {
				found = found || key == step.ID || key == pb.Name+"."+step.ID
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("%q names no step of the playbooks (use <step> or <playbook>.<step>)", key))
		}
		if st.Approval != "" && st.Approval != playbook.Approve && st.Approval != playbook.Deny {
			problems = append(problems, fmt.Sprintf("%q: approval %q: use approve or deny", key, st.Approval))
		}
		if st.Error != "" && (st.Output != nil || st.Outputs != nil) {
			problems = append(problems, fmt.Sprintf("%q: give an output or an error, not both", key))
		}
	}
	slices.Sort(problems)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (s stubs) of(ref engine.StepRef) (stub, bool) {
	if st, ok := s[ref.Playbook+"."+ref.Step]; ok {
		return st, true
	}
	st, ok := s[ref.Step]
	return st, ok
}

// readStubs reads a stubs file (YAML or JSON: a mapping of step to stub).
func readStubs(path string) (stubs, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read step outputs: %w", err)
	}
	var s stubs
	if err := strictYAML(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// strictYAML decodes one YAML (or JSON) document, refusing unknown keys.
func strictYAML(data []byte, v any) error {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

// dryRun runs alerts through the engine with stand-in actions.
type dryRun struct {
	pbs   []*playbook.Playbook
	stubs stubs
	now   func() time.Time

	mu    sync.Mutex
	sent  map[engine.StepRef]actions.Inputs // what each step (item) would send
	gates map[engine.StepRef]engine.Gate    // the approvals asked
}

// dryResult is one alert's dry run.
type dryResult struct {
	engine.Result
	sent  map[engine.StepRef]actions.Inputs
	gates map[engine.StepRef]engine.Gate
}

func (d *dryRun) run(ctx context.Context, a engine.Alert) dryResult {
	d.mu.Lock()
	d.sent, d.gates = map[engine.StepRef]actions.Inputs{}, map[engine.StepRef]engine.Gate{}
	d.mu.Unlock()
	cat := catalogue()
	var acts []actions.Action
	for _, name := range cat.Names() {
		spec, _ := cat.Spec(name)
		acts = append(acts, standIn{spec: spec, d: d})
	}
	reg, err := actions.NewRegistry(acts...)
	if err != nil {
		panic(err) // the catalogue was built from the same specs
	}
	now := d.now
	if now == nil {
		now = time.Now
	}
	eng := engine.New(d.pbs, reg, actions.NewDispatcher(zap.NewNop()), nil, engine.Options{
		Worker: "dry-run", Log: zap.NewNop(), Now: now, Approvals: d,
	})
	res := eng.Process(ctx, a)
	d.mu.Lock()
	defer d.mu.Unlock()
	return dryResult{Result: res, sent: d.sent, gates: d.gates}
}

// Gate decides every approval at once, as the stubs say (approve unless told otherwise).
func (d *dryRun) Gate(ctx context.Context, g engine.Gate) (*engine.ApprovalInfo, error) {
	ref, _ := engine.StepFrom(ctx)
	d.mu.Lock()
	d.gates[ref] = g
	d.mu.Unlock()
	st, _ := d.stubs.of(ref)
	info := &engine.ApprovalInfo{Decision: playbook.Approve, By: []string{"dry-run"}, DecidedAt: d.now().UTC(), Reason: "assumed approved"}
	if st.Approval == playbook.Deny {
		info.Decision, info.Reason = playbook.Deny, "denied in the test"
	}
	if st.By != "" {
		info.By = []string{st.By}
	}
	return info, nil
}

// standIn is an action that records its inputs and answers from the stubs.
type standIn struct {
	spec actions.Spec
	d    *dryRun
}

func (s standIn) Spec() actions.Spec { return s.spec }

func (s standIn) Run(ctx context.Context, in actions.Inputs) (actions.Output, error) {
	ref, _ := engine.StepFrom(ctx)
	s.d.mu.Lock()
	s.d.sent[ref] = in
	s.d.mu.Unlock()
	st, ok := s.d.stubs.of(ref)
	switch {
	case !ok:
		return actions.Output{}, nil
	case st.Error != "":
		return nil, actions.Permanent(errors.New(st.Error))
	case st.Outputs != nil:
		if ref.Item < 0 || ref.Item >= len(st.Outputs) {
			return nil, actions.Permanent(fmt.Errorf("the stub gives %d outputs; item %d has none", len(st.Outputs), ref.Item))
		}
		return copyOutput(st.Outputs[ref.Item]), nil
	}
	return copyOutput(st.Output), nil
}

// copyOutput gives each call its own output, with numbers as the engine's clients give them.
func copyOutput(out map[string]any) actions.Output {
	if out == nil {
		return actions.Output{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return actions.Output{}
	}
	var c actions.Output
	_ = json.Unmarshal(b, &c)
	return c
}

// playbookPaths collects the playbook files named by args (files, or directories searched as
// the worker searches --playbooks).
func playbookPaths(args []string) ([]string, error) {
	var paths []string
	for _, a := range args {
		info, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("playbooks: %w", err)
		}
		if !info.IsDir() {
			paths = append(paths, a)
			continue
		}
		files, err := playbook.Files(a)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("no playbooks (*.yaml, *.yml) in %s", a)
		}
		paths = append(paths, files...)
	}
	return paths, nil
}

// relTo resolves path against the directory of the file that names it.
func relTo(file, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(filepath.Dir(file), path)
}
