package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/riposte-soar/riposte/internal/playbook"
)

// cmdPlan shows what the worker would do with one alert, without calling any vendor: which
// playbooks match, and for each step whether its `if` holds and what inputs it would send.
// Earlier steps are taken to succeed with unknown output (nil), so conditions on their output
// are evaluated as if it were missing, and the plan says so.
func cmdPlan(_ context.Context, args []string, env environ, stdin io.Reader, stdout, stderr io.Writer) error {
	var s settings
	var subject, id string
	f := newAlertFlags("plan", env, stderr)
	defineCommon(f, &s)
	f.String(&subject, "subject", "", "soar.alerts.checkpoint.phishing", "subject the alert would arrive on (the default is one the shipped phishing playbook takes)")
	f.String(&id, "id", "", "", "alert id (Nats-Msg-Id); default: the alert's string id field, else plan:1")
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
	var alert map[string]any
	if err := json.Unmarshal(data, &alert); err != nil || alert == nil {
		return fmt.Errorf("the alert must be a JSON object (the worker would dead-letter it to soar.dlq.invalid): %v", err)
	}
	if id == "" {
		id, _ = alert["id"].(string)
	}
	if id == "" {
		id = "plan:1"
	}
	writePlan(stdout, pbs, alert, subject, id, time.Now())
	return nil
}

func writePlan(w io.Writer, pbs []*playbook.Playbook, alert map[string]any, subject, id string, now time.Time) {
	fmt.Fprintf(w, "alert %s on %s\n", id, subject)
	matched := 0
	for _, pb := range pbs {
		if !pb.MatchesSubject(subject) {
			fmt.Fprintf(w, "\n%s: not run (subject is outside %s)\n", pb.Name, strings.Join(pb.On, " "))
			continue
		}
		env := &playbook.Env{Alert: alert, Subject: subject, Headers: map[string]string{}, AlertID: id,
			Steps: map[string]playbook.StepState{}, Now: now}
		vars, err := pb.EvalVars(env)
		env.Vars = vars
		ok := false
		if err == nil {
			ok, err = pb.When(env)
		}
		switch {
		case err != nil:
			fmt.Fprintf(w, "\n%s: would fail: %v\n", pb.Name, err)
			matched++
			continue
		case !ok:
			fmt.Fprintf(w, "\n%s: not run (when is false)\n", pb.Name)
			continue
		}
		matched++
		fmt.Fprintf(w, "\n%s: runs → %s\n", pb.Name, pb.File)
		for i, st := range pb.Steps {
			run, err := st.ShouldRun(env)
			verdict := "runs"
			switch {
			case err != nil:
				verdict = "cannot tell before running: " + err.Error()
			case !run:
				verdict = "skipped (if is false)"
			}
			fmt.Fprintf(w, "  %d. %s  %s  %s\n", i+1, st.ID, st.Action, verdict)
			if err == nil && run {
				in, err := st.Render(env)
				if err != nil {
					fmt.Fprintf(w, "     inputs: cannot render: %v\n", err)
				} else {
					b, _ := json.Marshal(in)
					fmt.Fprintf(w, "     inputs: %s\n", b)
				}
			}
			// What later steps see: success, with an output nobody knows yet.
			env.Steps[st.ID] = playbook.StepState{Status: "succeeded"}
		}
	}
	if matched == 0 {
		fmt.Fprintln(w, "\nno playbook matches: the outcome would go to soar.outcomes.unmatched")
	}
	fmt.Fprintln(w, "\n(a plan calls no vendor: earlier steps are assumed to succeed, with unknown output)")
}
