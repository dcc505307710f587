// Package natspub is the nats.publish action: a playbook step that publishes a message, for
// example a notification for the SOC's chat bridge, or a new alert for another playbook.
package natspub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/actions"
)

// Name is the action's catalogue name.
const Name = "nats.publish"

// Action publishes to the worker's own NATS connection, which exists only once the worker has
// connected: Bind it before any alert runs.
type Action struct {
	spec actions.Spec
	mu   sync.RWMutex
	nc   *nats.Conn
	js   jetstream.JetStream
}

// New returns an unbound action; its Spec is usable at once, for checking playbooks.
func New() *Action { return &Action{spec: spec()} }

// Vendor declares nats.publish like any vendor: it reads no variables, and it runs for real
// under --simulate, on the worker's own connection, which the worker binds once connected.
func Vendor() actions.Vendor {
	return actions.Vendor{
		Name:  "nats",
		Title: "NATS",
		Specs: []actions.Spec{spec()},
		Open: func(actions.Settings, actions.Deps) (*actions.Instance, error) {
			return &actions.Instance{Actions: []actions.Action{New()}}, nil
		},
	}
}

// Bind gives the action the connection to publish on.
func (a *Action) Bind(nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("%s: open jetstream: %w", Name, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nc, a.js = nc, js
	return nil
}

// Spec declares the inputs.
func (a *Action) Spec() actions.Spec { return a.spec }

func spec() actions.Spec {
	return actions.Spec{
		Name:   Name,
		Vendor: "nats",
		Doc: "Publish a message on the worker's NATS connection, e.g. a notification. A subject that a " +
			"JetStream stream captures is published with JetStream and acknowledged; any other is a plain " +
			"publish. " +
			"Publishing onto the alerts subjects feeds the message back to the playbooks: mind loops.",
		Inputs: []actions.Input{
			{Name: "subject", Type: actions.String, Required: true, Doc: "the subject to publish to (no wildcards)",
				Verify: func(v any) error { return checkSubject(v.(string)) }},
			{Name: "data", Type: actions.Any, Doc: "the payload: a string is sent as it is, anything else as JSON; absent means empty"},
			{Name: "headers", Type: actions.Object, Doc: "message headers, each a one-line string",
				Verify: func(v any) error { return checkHeaders(v.(map[string]any)) }},
			{Name: "msgId", Type: actions.String, Doc: "Nats-Msg-Id, so that JetStream drops a repeat (e.g. ${{ alert_id }}:notify)"},
		},
		Output: "`{\"subject\", \"stream\", \"sequence\", \"duplicate\"}`; the stream fields only when a JetStream stream stored the message.",
	}
}

// Run publishes one message.
func (a *Action) Run(ctx context.Context, in actions.Inputs) (actions.Output, error) {
	subject := in.String("subject")
	m := nats.NewMsg(subject)
	switch d := in["data"].(type) {
	case nil:
	case string:
		m.Data = []byte(d)
	default:
		b, err := json.Marshal(d)
		if err != nil {
			return nil, actions.Permanent(fmt.Errorf("%s: input \"data\" cannot be encoded as JSON: %w", Name, err))
		}
		m.Data = b
		m.Header.Set("Content-Type", "application/json")
	}
	if hs, ok := in["headers"].(map[string]any); ok {
		for k, v := range hs {
			m.Header.Set(k, v.(string))
		}
	}
	if id := in.String("msgId"); id != "" {
		m.Header.Set(nats.MsgIdHdr, id)
	}

	a.mu.RLock()
	nc, js := a.nc, a.js
	a.mu.RUnlock()
	if nc == nil {
		return nil, fmt.Errorf("%s: not connected to NATS yet", Name)
	}
	// Ask first whether a stream captures the subject: a JetStream publish is a request, and a
	// plain subscriber on a notification subject would take it and never answer.
	if _, err := js.StreamNameBySubject(ctx, subject); errors.Is(err, jetstream.ErrStreamNotFound) {
		if err := nc.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("%s: publish to %s: %w", Name, subject, err)
		}
		// Flushed, so that it has left the worker before the step counts as done.
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if _, ok := ctx.Deadline(); !ok {
			fctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		}
		defer cancel()
		if err := nc.FlushWithContext(fctx); err != nil {
			return nil, fmt.Errorf("%s: publish to %s: %w", Name, subject, err)
		}
		return actions.Output{"subject": subject}, nil
	} else if err != nil {
		return nil, fmt.Errorf("%s: find the stream for %s: %w", Name, subject, err)
	}
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("%s: publish to %s: %w", Name, subject, err)
	}
	return actions.Output{"subject": subject, "stream": ack.Stream, "sequence": ack.Sequence, "duplicate": ack.Duplicate}, nil
}

func checkHeaders(hs map[string]any) error {
	for k, v := range hs {
		s, ok := v.(string)
		if !ok || k == "" || strings.ContainsAny(k+s, "\r\n") {
			return fmt.Errorf("%q must be a one-line string", k)
		}
	}
	return nil
}

func checkSubject(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return fmt.Errorf("%q is not a literal subject", s)
		}
	}
	return nil
}
