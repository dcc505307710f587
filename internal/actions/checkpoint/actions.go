package checkpoint

import (
	"context"
	"fmt"

	"github.com/riposte-soar/riposte/internal/actions"
)

const vendor = "checkpoint"

// Actions returns the HEC entries of the action catalogue, all served by c.
func Actions(c *Client) []actions.Action {
	idsInput := actions.Input{
		Name: "entityIds", Type: actions.StringList, Required: true,
		Doc: "HEC entity ids to act on (e.g. the email's entity id); one request carries them all",
	}
	paramInput := actions.Input{
		Name: "entityActionParam", Type: actions.String,
		Doc: "additional parameter of the action, e.g. a reason; empty when none",
	}
	return []actions.Action{
		entityAction(c, "quarantine",
			"Quarantine entities (e.g. emails) in Harmony Email & Collaboration: POST /action/entity with entityActionName quarantine.",
			idsInput, paramInput),
		entityAction(c, "restore",
			"Restore quarantined entities in Harmony Email & Collaboration: POST /action/entity with entityActionName restore.",
			idsInput, paramInput),
		&action{
			spec: actions.Spec{
				Name:   vendor + ".entity_action",
				Vendor: vendor,
				Doc:    "Run any HEC entity action (quarantine, restore, dismiss, …) on entities: POST /action/entity.",
				Inputs: []actions.Input{
					idsInput,
					{Name: "entityActionName", Type: actions.String, Required: true, Doc: "the HEC action to run, e.g. quarantine"},
					paramInput,
				},
				// The action is whatever the playbook names: nothing says repeating it is harmless.
				Idempotent: false,
			},
			run: func(ctx context.Context, in actions.Inputs) (actions.Output, error) {
				return runEntityAction(ctx, c, vendor+".entity_action", in, in.String("entityActionName"))
			},
		},
		&action{
			spec: actions.Spec{
				Name:   vendor + ".get_event",
				Vendor: vendor,
				Doc:    "Fetch a HEC security event (state, severity, available actions, actions taken): GET /event/{eventId}. The output is the event itself.",
				Inputs: []actions.Input{
					{Name: "eventId", Type: actions.String, Required: true, Doc: "the HEC event id"},
				},
				Idempotent: true,
			},
			run: func(ctx context.Context, in actions.Inputs) (actions.Output, error) {
				id := in.String("eventId")
				if err := checkPathValue(id); err != nil {
					return nil, invalid(vendor+".get_event", "eventId", err)
				}
				return c.GetEvent(ctx, id)
			},
		},
		&action{
			spec: actions.Spec{
				Name:   vendor + ".get_exceptions",
				Vendor: vendor,
				Doc:    "List one HEC exception list: GET /exceptions/{excType}. Output: {\"exceptions\": [...]}.",
				Inputs: []actions.Input{
					{Name: "excType", Type: actions.String, Required: true, Doc: "exception type, e.g. whitelist or blacklist"},
				},
				Idempotent: true,
			},
			run: func(ctx context.Context, in actions.Inputs) (actions.Output, error) {
				t := in.String("excType")
				if err := checkExcType(t); err != nil {
					return nil, invalid(vendor+".get_exceptions", "excType", err)
				}
				list, err := c.GetExceptions(ctx, t)
				if err != nil {
					return nil, err
				}
				out := make([]any, len(list))
				for i, e := range list {
					out[i] = e
				}
				return actions.Output{"exceptions": out}, nil
			},
		},
	}
}

// entityAction builds checkpoint.<name>_entity, an entity action with a fixed name.
func entityAction(c *Client, name, doc string, inputs ...actions.Input) actions.Action {
	spec := actions.Spec{
		Name:   vendor + "." + name + "_entity",
		Vendor: vendor,
		Doc:    doc,
		Inputs: inputs,
		// Quarantine and restore set a state: doing it twice leaves the entity as once.
		Idempotent: true,
	}
	return &action{
		spec: spec,
		run: func(ctx context.Context, in actions.Inputs) (actions.Output, error) {
			return runEntityAction(ctx, c, spec.Name, in, name)
		},
	}
}

func runEntityAction(ctx context.Context, c *Client, action string, in actions.Inputs, actionName string) (actions.Output, error) {
	ids := in.StringList("entityIds")
	if err := checkEntityIDs(ids); err != nil {
		return nil, invalid(action, "entityIds", err)
	}
	if err := checkActionName(actionName); err != nil {
		return nil, invalid(action, "entityActionName", err)
	}
	tasks, err := c.EntityAction(ctx, ids, actionName, in.String("entityActionParam"))
	if err != nil {
		return nil, err
	}
	out := make([]any, len(tasks))
	for i, t := range tasks {
		out[i] = map[string]any{"entityId": t.EntityID, "taskId": t.TaskID}
	}
	return actions.Output{"tasks": out}, nil
}

func invalid(action, input string, err error) error {
	return actions.Permanent(fmt.Errorf("%s: invalid inputs: input %q: %w", action, input, err))
}

// action is one catalogue entry: its declaration and the call it makes.
type action struct {
	spec actions.Spec
	run  func(ctx context.Context, in actions.Inputs) (actions.Output, error)
}

func (a *action) Spec() actions.Spec { return a.spec }

// Run checks in against the spec itself: the dispatcher does too, but an action may be called alone.
func (a *action) Run(ctx context.Context, in actions.Inputs) (actions.Output, error) {
	if err := a.spec.Check(in); err != nil {
		return nil, err
	}
	return a.run(ctx, in)
}
