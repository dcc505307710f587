package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/jsonval"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// cmdPlan shows what the worker would do with one alert, calling no vendor: which playbooks
// match and, for those that do not, which part of `when` was false with the values it saw;
// which steps run or are skipped and why; every step's inputs. Steps are answered by the
// --outputs file, or succeed with an empty output.
func cmdPlan(ctx context.Context, args []string, env environ, stdin io.Reader, stdout, stderr io.Writer) error {
	var (
		s                    settings
		subject, id, outputs string
		asJSON               bool
	)
	f := newAlertFlags("plan", env, stderr)
	defineCommon(f, &s)
	f.String(&subject, "subject", "", "soar.alerts.checkpoint.phishing", "subject the alert would arrive on (the default is one the shipped phishing playbook takes)")
	f.String(&id, "id", "", "", "alert id (Nats-Msg-Id); default: the alert's string id field, else plan:1")
	f.String(&outputs, "outputs", "", "", "a YAML or JSON file of step outputs (<step> or <playbook>.<step>: {output: …} or {error: …}), so later steps' conditions can be planned")
	f.Bool(&asJSON, "json", "", false, "the plan as one JSON document")
	if err := parseFlags(f, args, stderr); err != nil {
		return err
	}
	data, err := readAlertArg(f, stdin)
	if err != nil {
		return err
	}
	pbs, err := loadPlaybooks(s.playbooks)
	if err != nil {
		return err
	}
	body, err := jsonval.Decode(data)
	alert, ok := body.(map[string]any)
	if err != nil || !ok {
		return fmt.Errorf("the alert must be a JSON object (the worker would dead-letter it to soar.dlq.invalid): %v", err)
	}
	var st stubs
	if outputs != "" {
		if st, err = readStubs(outputs); err != nil {
			return err
		}
		if err := st.check(pbs); err != nil {
			return fmt.Errorf("%s: %w", outputs, err)
		}
	}
	if id == "" {
		id, _ = alert["id"].(string)
	}
	if id == "" {
		id = "plan:1"
	}
	p := makePlan(ctx, &dryRun{pbs: pbs, stubs: st, now: time.Now}, engine.Alert{ID: id, Subject: subject, Headers: map[string]string{}, Body: alert, Deliveries: 1})
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(p)
	}
	p.write(stdout)
	return nil
}

// plan is what a dry run of one alert did, as `worker plan` prints it and `worker test`
// compares it.
type plan struct {
	AlertID   string         `json:"alert_id"`
	Subject   string         `json:"subject"`
	Playbooks []playbookPlan `json:"playbooks"`
	Unmatched bool           `json:"unmatched"` // no playbook matched: the outcome goes to soar.outcomes.unmatched
}

type playbookPlan struct {
	Name string `json:"name"`
	File string `json:"file"`
	Runs bool   `json:"runs"`
	// NotRun says why a playbook does not run: its subject filters, or its `when`.
	NotRun string     `json:"not_run,omitempty"`
	Why    []whyPlan  `json:"why,omitempty"`
	Status string     `json:"status,omitempty"` // the outcome's status
	Error  string     `json:"error,omitempty"`
	Steps  []stepPlan `json:"steps,omitempty"`
}

type stepPlan struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Status string `json:"status"`
	// Skipped says why a skipped step did not run: its `if` (Why says which part), or an
	// earlier step that stopped the run.
	Skipped  string               `json:"skipped,omitempty"`
	Why      []whyPlan            `json:"why,omitempty"`
	Inputs   any                  `json:"inputs,omitempty"` // the step's inputs; under foreach, a list per item
	Output   any                  `json:"output,omitempty"`
	Error    string               `json:"error,omitempty"`
	Prompt   string               `json:"approval_prompt,omitempty"`
	Approval *engine.ApprovalInfo `json:"approval,omitempty"`
}

type whyPlan struct {
	Part  string     `json:"part"`
	Error string     `json:"error,omitempty"`
	Saw   []seenPlan `json:"saw,omitempty"`
}

type seenPlan struct {
	Expr  string `json:"expr"`
	Value any    `json:"value"`
}

func whys(ws []playbook.Why, prefix string) []whyPlan {
	out := make([]whyPlan, 0, len(ws))
	for _, w := range ws {
		wp := whyPlan{Part: prefix + w.Part, Error: w.Err}
		for _, s := range w.Saw {
			wp.Saw = append(wp.Saw, seenPlan{Expr: s.Expr, Value: s.Value})
		}
		out = append(out, wp)
	}
	return out
}

// makePlan runs a dry run of a and explains it.
func makePlan(ctx context.Context, d *dryRun, a engine.Alert) *plan {
	res := d.run(ctx, a)
	p := &plan{AlertID: a.ID, Subject: a.Subject, Playbooks: []playbookPlan{}}
	outcomes := map[string]engine.Outcome{}
	for _, o := range res.Outcomes {
		if o.Status == engine.StatusUnmatched {
			p.Unmatched = true
			continue
		}
		outcomes[o.Playbook] = o
	}
	for _, pb := range d.pbs {
		pp := playbookPlan{Name: pb.Name, File: pb.File}
		env := &playbook.Env{Alert: a.Body, Subject: a.Subject, Headers: a.Headers, AlertID: a.ID,
			Steps: map[string]playbook.StepState{}, Now: d.now().UTC()}
		if vars, err := pb.EvalVars(env); err == nil {
			env.Vars = vars
		}
		o, ran := outcomes[pb.Name]
		switch {
		case !pb.MatchesSubject(a.Subject):
			pp.NotRun = "the subject is outside " + strings.Join(pb.On, " ")
		case !ran:
			pp.NotRun = "its when is false"
			pp.Why = whys(pb.ExplainWhen(env), "")
		default:
			pp.Runs, pp.Status, pp.Error = true, o.Status, o.Error
			pp.Steps = stepPlans(pb, o, env, res)
		}
		p.Playbooks = append(p.Playbooks, pp)
	}
	return p
}

func stepPlans(pb *playbook.Playbook, o engine.Outcome, env *playbook.Env, res dryResult) []stepPlan {
	var out []stepPlan
	stopped := false
	for i, so := range o.Steps {
		st := pb.Steps[i]
		sp := stepPlan{ID: so.ID, Action: so.Action, Status: so.Status, Output: so.Output, Error: so.Error, Approval: so.Approval}
		sp.Inputs, sp.Prompt = sentBy(res, pb.Name, st)
		if so.Status == engine.StatusSkipped {
			if stopped {
				sp.Skipped = "an earlier step stopped the run"
			} else {
				sp.Skipped = "its if is false"
				sp.Why = explainIf(st, env)
			}
		}
		if (so.Status == engine.StatusFailed || so.Status == engine.StatusDenied) && st.OnError != playbook.OnErrorContinue {
			stopped = true
		}
		env.Steps[so.ID] = playbook.StepState{Status: so.Status, Output: so.Output, Error: so.Error}
		out = append(out, sp)
	}
	return out
}

// sentBy is what a step would send: its inputs (a list per item under foreach) and its approval
// prompt.
func sentBy(res dryResult, pbName string, st *playbook.Step) (any, string) {
	if !st.HasForEach() {
		ref := engine.StepRef{Playbook: pbName, Step: st.ID, Item: -1}
		in, ok := res.sent[ref]
		prompt := res.gates[ref].Prompt
		if !ok {
			return nil, prompt
		}
		return map[string]any(in), prompt
	}
	n := 0 // items the step reached
	for ref := range res.sent {
		if ref.Playbook == pbName && ref.Step == st.ID {
			n = max(n, ref.Item+1)
		}
	}
	for ref := range res.gates {
		if ref.Playbook == pbName && ref.Step == st.ID {
			n = max(n, ref.Item+1)
		}
	}
	var items []any
	prompt := ""
	for i := range n {
		ref := engine.StepRef{Playbook: pbName, Step: st.ID, Item: i}
		if prompt == "" {
			prompt = res.gates[ref].Prompt
		}
		if in, sent := res.sent[ref]; sent {
			items = append(items, map[string]any(in))
		} else {
			items = append(items, nil)
		}
	}
	for len(items) > 0 && items[len(items)-1] == nil {
		items = items[:len(items)-1]
	}
	if items == nil {
		return nil, prompt
	}
	return items, prompt
}

// explainIf says which parts of a skipped step's `if` were false (for each item under foreach).
func explainIf(st *playbook.Step, env *playbook.Env) []whyPlan {
	if !st.HasForEach() {
		return whys(st.ExplainIf(env, nil), "")
	}
	items, err := st.Items(env)
	if err != nil {
		return []whyPlan{{Part: "foreach", Error: err.Error()}}
	}
	var out []whyPlan
	for i, item := range items {
		out = append(out, whys(st.ExplainIf(env, item), fmt.Sprintf("item %d: ", i))...)
	}
	return out
}

func (p *plan) write(w io.Writer) {
	fmt.Fprintf(w, "alert %s on %s\n", p.AlertID, p.Subject)
	for _, pp := range p.Playbooks {
		if !pp.Runs {
			fmt.Fprintf(w, "\n%s: not run: %s\n", pp.Name, pp.NotRun)
			writeWhys(w, "   ", pp.Why)
			continue
		}
		fmt.Fprintf(w, "\n%s: runs (%s), would end %s\n", pp.Name, pp.File, pp.Status)
		if pp.Error != "" {
			fmt.Fprintf(w, "   error: %s\n", pp.Error)
		}
		for i, sp := range pp.Steps {
			verdict := sp.Status
			if sp.Skipped != "" {
				verdict += ": " + sp.Skipped
			}
			fmt.Fprintf(w, "  %d. %s  %s  %s\n", i+1, sp.ID, sp.Action, verdict)
			writeWhys(w, "     ", sp.Why)
			if sp.Prompt != "" {
				fmt.Fprintf(w, "     approval: %q", sp.Prompt)
				if sp.Approval != nil {
					fmt.Fprintf(w, " (%s by %s)", sp.Approval.Decision, strings.Join(sp.Approval.By, ", "))
				}
				fmt.Fprintln(w)
			}
			if sp.Inputs != nil {
				fmt.Fprintf(w, "     inputs: %s\n", compactJSON(sp.Inputs))
			}
			if sp.Error != "" {
				fmt.Fprintf(w, "     error: %s\n", sp.Error)
			}
		}
	}
	if p.Unmatched {
		fmt.Fprintln(w, "\nno playbook matches: the outcome would go to soar.outcomes.unmatched")
	}
	fmt.Fprintln(w, "\n(a plan calls no vendor: each step is answered by --outputs, or succeeds with an empty output)")
}

func writeWhys(w io.Writer, indent string, ws []whyPlan) {
	for _, wp := range ws {
		fmt.Fprintf(w, "%s- %s is false", indent, wp.Part)
		if wp.Error != "" {
			fmt.Fprintf(w, " (cannot be evaluated: %s)", wp.Error)
		}
		var saw []string
		for _, s := range wp.Saw {
			saw = append(saw, fmt.Sprintf("%s was %s", s.Expr, compactJSON(s.Value)))
		}
		if len(saw) > 0 {
			fmt.Fprintf(w, ": %s", strings.Join(saw, ", "))
		}
		fmt.Fprintln(w)
	}
}

// compactJSON writes v as one line of JSON with sorted keys.
func compactJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
