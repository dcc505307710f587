package checkpoint

import (
	"context"
	"errors"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

const vendor = "checkpoint"

// The environment variables the worker reads for HEC.
const (
	EnvBaseURL   = "HEC_BASE_URL"
	EnvRegion    = "HEC_REGION"
	EnvClientID  = "HEC_CLIENT_ID"
	EnvAccessKey = "HEC_ACCESS_KEY"
	EnvCACert    = "HEC_CA_CERT"
	EnvRateLimit = "HEC_RATE_LIMIT"
)

// Vendor declares HEC to the worker: its variables, its actions, its client and its fake.
func Vendor() actions.Vendor {
	return actions.Vendor{
		Name:  vendor,
		Title: "Check Point Harmony Email & Collaboration (HEC)",
		Vars: []actions.Var{
			{Name: EnvBaseURL, Doc: "the Smart API gateway URL; overrides HEC_REGION",
				Check: func(v string) error { _, err := vendorhttp.BaseURL("HEC base URL", v); return err }},
			{Name: EnvRegion, Default: "US", Doc: "the gateway's region when HEC_BASE_URL is unset: US, EU, CA, AP, UK, ME or IN",
				Check: func(v string) error { _, err := GatewayURL(v); return err }},
			{Name: EnvClientID, Required: true, Doc: "the API key's client id"},
			{Name: EnvAccessKey, Required: true, Secret: true, Doc: "the API key's access key"},
			actions.RateVar(EnvRateLimit, "0"),
			actions.CAVar(EnvCACert),
		},
		RateLimitVar: EnvRateLimit,
		CAVar:        EnvCACert,
		Specs:        actions.SpecsOf(defs()),
		Open:         open,
		Simulate:     simulate,
	}
}

func open(s actions.Settings, d actions.Deps) (*actions.Instance, error) {
	base := s[EnvBaseURL]
	if base == "" {
		var err error
		if base, err = GatewayURL(s[EnvRegion]); err != nil {
			return nil, err
		}
	}
	c, err := NewClient(Config{
		BaseURL: base, ClientID: s[EnvClientID], AccessKey: s[EnvAccessKey],
		HTTPClient: d.HTTP, UserAgent: d.UserAgent,
	}, d.Log.Named(vendor))
	if err != nil {
		return nil, err
	}
	return &actions.Instance{Actions: actions.Bind(c, defs())}, nil
}

// simulate serves a fake HEC that makes up an event for any id it is asked about, so alerts
// that name events it never saw still run.
func simulate() (actions.Settings, func(), error) {
	const id, key = "riposte-simulate", "riposte-simulate-key"
	f := NewFake(id, key)
	f.SetSynthesize(true)
	f.KeepHistory(vendorhttp.SimulateHistory)
	url, stop := f.Start()
	return actions.Settings{EnvBaseURL: url, EnvClientID: id, EnvAccessKey: key}, stop, nil
}

const tasksOutput = "`{\"tasks\": [{\"entityId\", \"taskId\"}]}`: the vendor's task per entity; `taskId` is always text. " +
	"An entity the vendor did not act on fails the step with the vendor's message for it; the failed step's output still lists every entity, the refused ones with `\"error\"` and an empty `taskId`."

func defs() []actions.Def[*Client] {
	idsInput := actions.Input{
		Name: "entityIds", Type: actions.StringList, Required: true,
		Doc:    "HEC entity ids to act on (e.g. the email's entity id); one request carries them all",
		Verify: func(v any) error { return vendorhttp.IDs(v.([]string)) },
	}
	paramInput := actions.Input{
		Name: "entityActionParam", Type: actions.String,
		Doc: "additional parameter of the action, e.g. a reason; empty when none",
	}
	return []actions.Def[*Client]{
		entityAction("quarantine",
			"Quarantine entities (e.g. emails) in Harmony Email & Collaboration: POST /action/entity with entityActionName quarantine.",
			idsInput, paramInput),
		entityAction("restore",
			"Restore quarantined entities in Harmony Email & Collaboration: POST /action/entity with entityActionName restore.",
			idsInput, paramInput),
		{
			Spec: actions.Spec{
				Name:   vendor + ".entity_action",
				Vendor: vendor,
				Doc:    "Run any HEC entity action (quarantine, restore, dismiss, …) on entities: POST /action/entity.",
				Inputs: []actions.Input{
					idsInput,
					{Name: "entityActionName", Type: actions.String, Required: true, Doc: "the HEC action to run, e.g. quarantine",
						Verify: func(v any) error { return checkActionName(v.(string)) }},
					paramInput,
				},
				Output: tasksOutput,
				// The action is whatever the playbook names: nothing says repeating it is harmless.
				Idempotent: false,
				Batch:      entityBatch,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				return runEntityAction(ctx, c, in, in.String("entityActionName"))
			},
		},
		{
			Spec: actions.Spec{
				Name:   vendor + ".get_event",
				Vendor: vendor,
				Doc:    "Fetch a HEC security event (state, severity, available actions, actions taken): GET /event/{eventId}.",
				Inputs: []actions.Input{
					{Name: "eventId", Type: actions.String, Required: true, Doc: "the HEC event id",
						Verify: func(v any) error { return vendorhttp.PathSegment(v.(string)) }},
				},
				Output:     "the event itself, as HEC answers it: `state`, `severity`, `entityId`, `availableEventActions`, `actions`, ….",
				Idempotent: true,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				return c.GetEvent(ctx, in.String("eventId"))
			},
		},
		{
			Spec: actions.Spec{
				Name:   vendor + ".get_exceptions",
				Vendor: vendor,
				Doc:    "List one HEC exception list: GET /exceptions/{excType}.",
				Inputs: []actions.Input{
					{Name: "excType", Type: actions.String, Required: true, Doc: "exception type, e.g. whitelist or blacklist",
						Verify: func(v any) error { return checkExcType(v.(string)) }},
				},
				Output:     "`{\"exceptions\": [...]}`: the list's entries as HEC answers them.",
				Idempotent: true,
			},
			Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
				list, err := c.GetExceptions(ctx, in.String("excType"))
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

// entityAction declares checkpoint.<name>_entity, an entity action with a fixed name.
func entityAction(name, doc string, inputs ...actions.Input) actions.Def[*Client] {
	return actions.Def[*Client]{
		Spec: actions.Spec{
			Name:   vendor + "." + name + "_entity",
			Vendor: vendor,
			Doc:    doc,
			Inputs: inputs,
			Output: tasksOutput,
			// Quarantine and restore set a state: doing it twice leaves the entity as once.
			Idempotent: true,
			Batch:      entityBatch,
		},
		Run: func(ctx context.Context, c *Client, in actions.Inputs) (actions.Output, error) {
			return runEntityAction(ctx, c, in, name)
		},
	}
}

func runEntityAction(ctx context.Context, c *Client, in actions.Inputs, actionName string) (actions.Output, error) {
	tasks, err := c.EntityAction(ctx, in.StringList("entityIds"), actionName, in.String("entityActionParam"))
	if tasks == nil {
		return nil, err
	}
	if err != nil {
		return nil, actions.WithOutput(outputOf(tasks), err)
	}
	return outputOf(tasks), nil
}

// outputOf is an entity action's output: the vendor's task, or its refusal, for each entity.
func outputOf(tasks []Task) actions.Output {
	out := make([]any, len(tasks))
	for i, t := range tasks {
		task := map[string]any{"entityId": t.EntityID, "taskId": t.TaskID}
		if t.Error != "" {
			task["error"] = t.Error
		}
		out[i] = task
	}
	return actions.Output{"tasks": out}
}

// entityBatch lets the entity actions carry many alerts' entities in one request: HEC takes
// many entityIds and answers for each, so every step gets its own entities' tasks and fails
// only for its own refused ones.
var entityBatch = &actions.Batch{Input: "entityIds", Share: shareTasks}

// shareTasks is one step's part of a batched entity action: the tasks of its own entities,
// failed, with its own class, only when HEC refused one of them.
func shareTasks(out actions.Output, err error, targets []string) (actions.Output, error) {
	var ee *EntityError
	if err != nil && !errors.As(err, &ee) {
		return nil, err // the request failed as a whole
	}
	ids := vendorhttp.Dedupe(targets)
	var all []Task
	action := "entity action on"
	if ee != nil {
		all, action = ee.Tasks, ee.Action
	} else {
		list, _ := out["tasks"].([]any)
		for _, item := range list {
			t, _ := item.(map[string]any)
			id, _ := t["entityId"].(string)
			task, _ := t["taskId"].(string)
			all = append(all, Task{EntityID: id, TaskID: task})
		}
	}
	mine := tasksFor(ids, all)
	if err := entityError(action, action+" entities "+vendorhttp.ListForError(ids)+" on HEC", mine); err != nil {
		return outputOf(mine), err
	}
	return outputOf(mine), nil
}
